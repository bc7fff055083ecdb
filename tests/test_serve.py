"""The HTTP service: answers in every mode, limits and errors as JSON, API key, add/remove jobs, a live soak."""

import asyncio
import shutil
import threading
import time

import pytest
from fastapi.testclient import TestClient
from serving import NEW, NEW_QUESTION, build_kb

from polyprag.errors import InputError
from polyprag.kb.knowledge import KnowledgeBase
from polyprag.service.loadtest import Probe, call, cli_add, live_server, replica, require_loopback, run_load
from polyprag.service.serve import API_KEY_ENV, Limits, create_app

MODES = ["poly", "poly-combine", "poly-uniform", "rag", "closed-book"]


@pytest.fixture(scope="module")
def kb_folder(tiny_chat_model_dir, tmp_path_factory):
    return build_kb(tiny_chat_model_dir, tmp_path_factory.mktemp("serve") / "kb")


@pytest.fixture(scope="module")
def client(kb_folder):
    """A read-only service over the shared KB: tests that add or remove documents use `own_client`. Its tests
    send dozens of refused requests on purpose, so the throttle is off here (it has tests of its own)."""
    return TestClient(create_app(kb_folder, limits=Limits(max_refusals=0)), base_url="http://127.0.0.1")


@pytest.fixture
def own_client(kb_folder, tmp_path):
    folder = tmp_path / "kb"
    shutil.copytree(kb_folder, folder)
    return TestClient(create_app(folder), base_url="http://127.0.0.1"), folder


def ask(client, **body) -> tuple[int, dict]:
    r = client.post("/v1/answer", json={"max_new_tokens": 4, **body})
    return r.status_code, r.json()


def wait_for(get, job_id: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = get(job_id)
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s")


def job_of(client):
    return lambda job_id: client.get(f"/v1/jobs/{job_id}").json()


def raising(error: Exception):
    def f(*args, **kwargs):
        raise error
    return f


def test_health_reports_documents_version_and_model(client, tiny_chat_model_dir):
    h = client.get("/health").json()
    assert h["ok"] and h["n_docs"] == 3 and h["version"]
    assert h["model"] == tiny_chat_model_dir.name and str(tiny_chat_model_dir.parent) not in str(h)  # no paths


def test_the_modes_endpoint_lists_the_registrys_served_modes_poly_first(client):
    from polyprag.modes import MODES as REGISTRY

    modes = client.get("/v1/modes").json()
    assert modes[0]["name"] == "poly" and sorted(m["name"] for m in modes) == sorted(MODES)
    assert all(m["about"] == REGISTRY[m["name"]].about and m["passages"] == REGISTRY[m["name"]].passages
               for m in modes)
    assert client.post("/v1/answer", json={"question": "Who?", "mode": "prag"}).status_code == 422  # not served


@pytest.mark.parametrize("mode", MODES)
def test_one_question_in_every_mode(client, mode):
    status, res = ask(client, question="Who finished Marlow Bridge?", mode=mode, k=2)
    assert status == 200 and res["mode"] == mode and len(res["answers"]) == 1
    a = res["answers"][0]
    assert a["raw"].startswith("The answer is") and isinstance(a["answer"], str)
    if mode == "closed-book":
        assert a["documents"] == []  # nothing retrieved: the question alone
    else:
        assert a["documents"][0]["id"] == "marlow" and a["documents"][0]["score"] > 0
    if mode.startswith("poly"):
        weights = [w["weight"] for w in a["mixing"]["top"]]
        assert len(weights) == 4 and weights == sorted(weights, reverse=True)
        assert sum(weights) == pytest.approx(1, abs=1e-3)
        assert 0 < a["mixing"]["entropy"] <= a["mixing"]["max_entropy"] + 1e-6
    else:
        assert a["mixing"] is None  # no adapters in rag or closed-book


def test_uniform_mixing_has_maximal_entropy(client):
    mixing = ask(client, question="Who finished Marlow Bridge?", mode="poly-uniform")[1]["answers"][0]["mixing"]
    assert mixing["entropy"] == pytest.approx(mixing["max_entropy"], abs=1e-4)
    assert all(w["weight"] == pytest.approx(0.25, abs=1e-4) for w in mixing["top"])


def test_many_questions_are_answered_in_order(client):
    questions = ["Who finished Marlow Bridge?", "When was Velmark founded?", "Who invented the glass harp?"]
    status, res = ask(client, questions=questions, k=1)
    assert status == 200 and [a["question"] for a in res["answers"]] == questions
    assert [a["documents"][0]["id"] for a in res["answers"]] == ["marlow", "velmark", "glass"]


@pytest.mark.parametrize("body, message", [
    ({"question": "Who?", "k": 0}, "k=0 is out of range; use 1 to 20"),
    ({"question": "Who?", "k": 1000}, "k=1000 is out of range"),
    ({"question": "   "}, "question 0 is empty"),
    ({"question": "a" * 100_000}, "question 0 has 100000 characters; shorten it to at most 2000"),
    ({"questions": ["Who?"] * 33}, "33 questions; send 1 to 32"),
    ({"questions": []}, "0 questions"),
    ({}, 'give either "question"'),
    ({"question": "Who?", "questions": ["Who?"]}, "not both"),
    ({"question": "Who?", "max_new_tokens": 10_000}, "max_new_tokens=10000 is out of range"),
    ({"question": "Who?", "mode": "oracle"}, "mode: Input should be 'closed-book', 'rag', 'poly'"),
    ({"question": "Who?", "k": "three"}, "k: Input should be a valid integer"),
    ({"question": "Who?", "topk": 3}, "topk: Extra inputs are not permitted"),
])
def test_bad_requests_are_422_json_naming_the_value(client, body, message):
    status, res = ask(client, **body)
    assert status == 422 and message in res["error"], res


def test_malformed_json_is_a_422_json_error(client):
    r = client.post("/v1/answer", content=b'{"question": ', headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "JSON" in r.json()["error"]


def test_a_body_over_the_limit_is_413_by_header_or_by_bytes(kb_folder):
    client = TestClient(create_app(kb_folder, limits=Limits(max_body_bytes=1000)), base_url="http://127.0.0.1")
    r = client.post("/v1/answer", json={"question": "a" * 2000})
    assert r.status_code == 413 and "over 1,000 bytes" in r.json()["error"]
    # No Content-Length (chunked): the middleware counts the bytes as they come.
    r = client.post("/v1/answer", content=iter([b'{"question": "', b"a" * 800, b"a" * 800, b'"}']),
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "over 1,000 bytes" in r.json()["error"]
    assert client.post("/v1/answer", json={"question": "Who?", "max_new_tokens": 2}).status_code == 200


def test_the_default_body_limit_is_one_megabyte(client):
    r = client.post("/v1/documents", json={"documents": [{"id": "big", "text": "a" * 1_100_000}]})
    assert r.status_code == 413


def test_unknown_document_job_and_route_are_404_json(client):
    for path, fragment in [("/v1/documents/nope", "no document 'nope'"), ("/v1/jobs/nope", "no job 'nope'"),
                           ("/v2/nothing", "Not Found")]:
        r = client.get(path)
        assert r.status_code == 404 and fragment in r.json()["error"]
    r = client.delete("/v1/documents/nope")
    assert r.status_code == 404 and "no document 'nope'" in r.json()["error"]


@pytest.mark.parametrize("docs, status, message", [
    ([], 422, "0 documents; send 1 to 100"),
    ([{"id": f"d{i}", "text": "x"} for i in range(101)], 422, "101 documents"),
    ([{"id": "x", "text": "a"}, {"id": "x", "text": "b"}], 422, "'x' appears twice"),
    ([{"id": "x", "text": "  "}], 422, "has no text"),
    ([{"id": " x", "text": "a"}], 422, "without surrounding spaces"),
    ([{"id": "x", "text": "a" * 100_001}], 422, "100001 characters"),
    ([{"id": "marlow", "text": "a"}], 400, "'marlow' is already in the knowledge base; DELETE"),
    ([{"title": "no id", "text": "a"}], 422, "documents.0.id: Field required"),
])
def test_bad_documents_are_refused_before_any_job(client, docs, status, message):
    r = client.post("/v1/documents", json={"documents": docs})
    assert r.status_code == status and message in r.json()["error"], r.json()


def test_an_api_key_guards_additions_and_removals(client, monkeypatch):
    monkeypatch.setenv(API_KEY_ENV, "s3cret")
    body = {"documents": [NEW]}
    for headers in ({}, {"X-API-Key": "wrong"}):
        r = client.post("/v1/documents", json=body, headers=headers)
        assert r.status_code == 401 and "X-API-Key" in r.json()["error"]
        assert client.delete("/v1/documents/marlow", headers=headers).status_code == 401
    # With the key the request gets past the check (and then fails on its own merits, changing nothing).
    assert client.delete("/v1/documents/nope", headers={"X-API-Key": "s3cret"}).status_code == 404
    r = client.post("/v1/documents", json={"documents": []}, headers={"X-API-Key": "s3cret"})
    assert r.status_code == 422
    assert ask(client, question="Who?")[0] == 200  # reading needs no key


def test_adding_a_document_is_a_job_then_it_is_served(own_client):
    client, folder = own_client
    before = client.get("/health").json()["version"]
    r = client.post("/v1/documents", json={"documents": [NEW]})
    assert r.status_code == 202 and r.json()["status"] == "queued"
    job = wait_for(job_of(client), r.json()["job_id"])
    assert job["status"] == "done" and job["error"] is None and job["seconds"] > 0 and job["documents"] == ["pell"]
    assert job["version"] == client.get("/health").json()["version"] > before
    assert client.get("/health").json()["n_docs"] == 4
    doc = client.get("/v1/documents/pell").json()
    assert doc["text"] == NEW["text"] and len(doc["mixing"]["top"]) == 4
    a = ask(client, question=NEW_QUESTION, k=1)[1]["answers"][0]
    assert a["documents"][0]["id"] == "pell" and a["mixing"] == doc["mixing"]  # routed by the new row alone
    assert [d.id for d in KnowledgeBase.load(folder).docs][-1] == "pell"  # saved to the served folder


def test_deleting_a_document_is_a_job_then_it_is_gone(own_client):
    client, folder = own_client
    r = client.delete("/v1/documents/glass")
    assert r.status_code == 202 and r.json()["kind"] == "remove"
    job = wait_for(job_of(client), r.json()["job_id"])
    assert job["status"] == "done", job
    assert client.get("/v1/documents/glass").status_code == 404 and client.get("/health").json()["n_docs"] == 2
    answer = ask(client, question="Who invented the glass harp?")[1]["answers"][0]
    assert all(d["id"] != "glass" for d in answer["documents"])
    assert "glass" not in {d.id for d in KnowledgeBase.load(folder).docs}


def test_a_failed_job_reports_its_error_and_the_next_job_still_runs(own_client, monkeypatch):
    client, _ = own_client
    real_add = KnowledgeBase.add
    monkeypatch.setattr(KnowledgeBase, "add", raising(InputError("bad corpus X")))
    failed = wait_for(job_of(client), client.post("/v1/documents", json={"documents": [NEW]}).json()["job_id"])
    assert failed["status"] == "failed" and failed["error"] == "bad corpus X"
    monkeypatch.setattr(KnowledgeBase, "add", raising(RuntimeError("secret")))
    failed = wait_for(job_of(client), client.post("/v1/documents", json={"documents": [NEW]}).json()["job_id"])
    assert failed["status"] == "failed" and "secret" not in failed["error"] and "server log" in failed["error"]
    monkeypatch.setattr(KnowledgeBase, "add", real_add)
    done = wait_for(job_of(client), client.post("/v1/documents", json={"documents": [NEW]}).json()["job_id"])
    assert done["status"] == "done" and client.get("/health").json()["n_docs"] == 4


def test_an_unexpected_error_is_a_generic_500(kb_folder, monkeypatch):
    app = create_app(kb_folder)
    monkeypatch.setattr(app.state.service, "wait", raising(RuntimeError("secret path")))
    r = TestClient(app, raise_server_exceptions=False, base_url="http://127.0.0.1").post("/v1/answer", json={"question": "Who?"})
    assert r.status_code == 500 and r.json() == {"error": "internal server error; the server log has the details."}


def test_requests_waiting_for_the_model_are_answered_together_each_with_its_own_answers(kb_folder, monkeypatch):
    """Requests queued behind a busy model share one generation per mode; each gets exactly its own answers,
    retrieved documents and routing, the same as when it is asked alone."""
    from polyprag.kb import knowledge as kb_module

    app = create_app(kb_folder)
    client, service = TestClient(app, base_url="http://127.0.0.1"), app.state.service
    asks = [{"question": "Who finished Marlow Bridge?", "mode": "poly", "k": 1},
            {"questions": ["When was Velmark founded?", "Who invented the glass harp?"], "mode": "poly", "k": 2},
            {"question": "Who invented the glass harp?", "mode": "rag", "k": 1},
            {"question": "When was Velmark founded?", "mode": "closed-book"}]
    alone = [ask(client, **a)[1] for a in asks]
    calls = []
    real = kb_module.answer_questions
    monkeypatch.setattr(kb_module, "answer_questions", lambda lm, qs, *a, **kw: calls.append(qs) or real(lm, qs, *a, **kw))
    results = [None] * len(asks)
    with service.lock:  # the model is busy: all four wait
        threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, ask(client, **asks[i])))
                   for i in range(len(asks))]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(service.pending) < len(asks) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(service.pending) == len(asks)
    for t in threads:
        t.join(60)
    assert len(calls) == 1  # both poly requests in one generation (rag and closed-book do not go through the KB)
    assert sorted(calls[0]) == ["When was Velmark founded?", "Who finished Marlow Bridge?", "Who invented the glass harp?"]
    for got, want in zip(results, alone):
        assert got[0] == 200
        assert [a["question"] for a in got[1]["answers"]] == [a["question"] for a in want["answers"]]
        assert [[d["id"] for d in a["documents"]] for a in got[1]["answers"]] == \
               [[d["id"] for d in a["documents"]] for a in want["answers"]]
        assert [a["mixing"] for a in got[1]["answers"]] == [a["mixing"] for a in want["answers"]]


def test_the_web_page_and_the_openapi_docs_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert all(f'id="{i}"' in page.text for i in ("question", "mode", "ask", "answer", "docs", "weights",
                                                   "add-id", "add-title", "add-text", "add", "job-status"))
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/health", "/v1/answer", "/v1/documents", "/v1/jobs/{job_id}", "/v1/documents/{doc_id}"} <= set(paths)


@pytest.mark.soak
def test_live_server_answers_concurrently_while_a_document_is_added(kb_folder, tiny_chat_model_dir, tmp_path):
    """8 clients ask for 30 s over a real socket while a job adds a document with a grown inventory and a CLI
    `add` writes the same folder: no request fails, both documents land and are served, and the old
    documents' routing does not move."""
    folder = tmp_path / "kb"
    shutil.copytree(kb_folder, folder)
    questions = ["Who finished Marlow Bridge?", "When was Velmark founded?", NEW_QUESTION]
    outside = Probe({"id": "quill", "title": "Edda Quill", "text": "Edda Quill was a beekeeper born in 1877."},
                    "Which beekeeper was born in 1877?")
    with live_server(create_app(folder)) as url:
        report = run_load(url, questions, [Probe(NEW, NEW_QUESTION)], clients=8, seconds=30, add_every=2,
                          max_new_tokens=4, outside=cli_add(folder, str(tiny_chat_model_dir), epochs=1),
                          outside_probes=[outside], grow=1, old_ids=["marlow", "velmark", "glass"]).summary()
        status, res = call("POST", f"{url}/v1/answer", {"question": NEW_QUESTION, "k": 1, "max_new_tokens": 4})
        doc = call("GET", f"{url}/v1/documents/pell")[1]
    assert report["errors"] == 0 and report["jobs_done"] == 1 and report["outside_added"] == 1, report
    assert report["answered_during_jobs"] > 0  # queries went on while the job trained
    assert report["lost_documents"] == [] and report["probes_retrieved"] == 2
    assert report["old_routing_changed"] == []  # the service's addition grew the inventory; old rows as they were
    assert KnowledgeBase.load(folder).manifest.inventory.n_adapters == 5
    assert {"pell", "quill"} <= {d.id for d in KnowledgeBase.load(folder).docs}
    a = res["answers"][0]
    assert status == 200 and a["documents"][0]["id"] == "pell" and a["mixing"] == doc["mixing"]
    # ~900 answers on a 2-core CPU: the lock serialises answers, it does not stall them
    assert report["requests"] >= 50 and report["latency_p95_s"] > 0


def test_load_is_only_sent_to_loopback_addresses():
    for url in ("http://10.0.0.5:8000", "http://example.org", "http://192.168.1.2"):
        with pytest.raises(ValueError, match="not a loopback"):
            require_loopback(url)
    for url in ("http://127.0.0.1:8000", "http://localhost:1", "http://[::1]:8000"):
        require_loopback(url)


def test_the_official_openai_client_asks_the_kb_through_chat_completions(kb_folder):
    """A live server on loopback, driven by the `openai` package: the answer is the one /v1/answer gives for
    the same question, mode and token budget; what the API cannot do is refused by name."""
    import openai

    question = "Who finished Marlow Bridge?"
    with live_server(create_app(kb_folder)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="not-needed-for-open-reads", max_retries=0)
        assert {"polyprag", "poly", "rag", "closed-book"} <= {m.id for m in client.models.list()}
        for mode in ("poly", "rag"):
            reply = client.chat.completions.create(
                model=mode, max_tokens=4,
                messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": question}])
            status, direct = call("POST", f"{url}/v1/answer", {"question": question, "mode": mode, "max_new_tokens": 4})
            assert status == 200 and reply.choices[0].message.role == "assistant"
            assert reply.choices[0].message.content == direct["answers"][0]["answer"]
            assert reply.model_extra["polyprag"]["documents"][0] == "marlow" and reply.usage.total_tokens > 0
        with pytest.raises(openai.BadRequestError, match="model 'gpt-4o'"):
            client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": question}])
        with pytest.raises(openai.BadRequestError, match="stream=true is not supported"):
            client.chat.completions.create(model="poly", stream=True, messages=[{"role": "user", "content": question}])


@pytest.mark.soak
def test_a_replica_on_the_same_folder_serves_what_the_other_server_adds(kb_folder, tmp_path):
    """Two `polyprag serve` processes on one KB (a thread here, a replica process): the clients ask both
    while a job on the first adds a document; the replica picks up the new version without a failed
    request, serves the document within a minute of the job and retrieves it first."""
    folder = tmp_path / "kb"
    shutil.copytree(kb_folder, folder)
    questions = ["Who finished Marlow Bridge?", "When was Velmark founded?", NEW_QUESTION]
    with live_server(create_app(folder)) as url, replica(folder) as other:
        report = run_load(url, questions, [Probe(NEW, NEW_QUESTION)], clients=4, seconds=15, add_every=2,
                          max_new_tokens=4, replicas=(other,)).summary()
        doc = call("GET", f"{other}/v1/documents/pell")
    assert report["errors"] == 0 and report["jobs_done"] == 1 and report["lost_documents"] == [], report
    assert report["replicas"] == 1 and report["replica_seen_s_max"] is not None and report["replica_seen_s_max"] < 60
    assert report["replica_probes_retrieved"] == 1 and report["probes_retrieved"] == 1
    assert doc[0] == 200 and doc[1]["id"] == "pell"


def test_text_that_is_not_unicode_is_refused_at_the_edge(client):
    bad = '"Who built the \\ud800 bridge?"'  # a lone surrogate: valid JSON, not valid text
    for path, body in (("/v1/answer", '{"question": %s}' % bad),
                       ("/v1/chat/completions", '{"messages": [{"role": "user", "content": %s}]}' % bad),
                       ("/v1/chat/completions",
                        '{"messages": [{"role": "user", "content": [{"type": "text", "text": %s}]}]}' % bad),
                       ("/v1/chat/completions", '{"mode": "poly", "model": %s, "messages": [{"role": "user", '
                                                '"content": "Who?"}]}' % bad),
                       ("/v1/documents", '{"documents": [{"id": "x", "text": %s}]}' % bad)):
        r = client.post(path, content=body, headers={"Content-Type": "application/json"})
        assert r.status_code in (400, 422) and "UTF-8" in str(r.json()), (path, r.json())


def test_one_failing_request_fails_alone_in_a_shared_batch(kb_folder, tmp_path):
    from polyprag.service.state import Pending

    app = create_app(shutil.copytree(kb_folder, tmp_path / "kb"), watch_s=0)
    service = app.state.service
    honest, poisoned = Pending(["Who built the bridge?"], "poly", 2, 2), Pending(["Who \ud800?"], "poly", 2, 2)
    service._answer_all([honest, poisoned, Pending(["Where is it?"], "poly", 2, 2)])
    assert honest.error is None and honest.result[2][0].question == "Who built the bridge?"
    assert poisoned.error is not None and honest.done.is_set() and poisoned.done.is_set()


def test_light_endpoints_never_wait_behind_answers_and_the_queue_is_bounded(kb_folder, tmp_path):
    import anyio
    from concurrent.futures import ThreadPoolExecutor

    app = create_app(shutil.copytree(kb_folder, tmp_path / "kb"), watch_s=0,
                     limits=Limits(max_waiting=2, answer_wait_s=30))
    service = app.state.service
    with TestClient(app, base_url="http://127.0.0.1") as client, ThreadPoolExecutor(4) as pool:
        def two_threads():  # the server's threads for sync endpoints: both taken by the waiting answers
            anyio.to_thread.current_default_thread_limiter().total_tokens = 2

        client.portal.call(two_threads)
        service.lock.acquire()  # the model is busy
        try:
            waiting = [pool.submit(client.post, "/v1/answer", json={"question": f"Who {i}?", "max_new_tokens": 2})
                       for i in range(2)]
            deadline = time.monotonic() + 10
            while len(service.pending) < 2:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            start = time.monotonic()
            assert pool.submit(client.get, "/health").result(timeout=5).status_code == 200
            assert pool.submit(client.get, "/v1/documents/velmark").result(timeout=5).status_code == 200
            assert time.monotonic() - start < 5
        finally:
            service.lock.release()
        assert [w.result(timeout=60).status_code for w in waiting] == [200, 200]
        service.lock.acquire()
        try:
            waiting = [pool.submit(client.post, "/v1/answer", json={"questions": ["A?", "B?"], "max_new_tokens": 2})]
            while len(service.pending) < 1:
                time.sleep(0.05)
            over = pool.submit(client.post, "/v1/answer", json={"question": "C?", "max_new_tokens": 2}).result(5)
        finally:
            service.lock.release()
        assert waiting[0].result(timeout=60).status_code == 200
        assert over.status_code == 503 and int(over.headers["retry-after"]) > 0 and "waiting" in over.json()["error"]


def test_only_the_servers_own_host_names_are_answered(kb_folder, tmp_path):
    from polyprag.service.guards import host_name

    app = create_app(shutil.copytree(kb_folder, tmp_path / "kb"), watch_s=0, allowed_hosts=("kb.example.org",))
    for base, status in (("http://127.0.0.1:8000", 200), ("http://localhost", 200), ("http://[::1]:8000", 200),
                         ("http://kb.example.org", 200), ("http://attacker.example", 400),
                         ("http://attacker.example:8000", 400)):
        r = TestClient(app, base_url=base).get("/health")
        assert r.status_code == status, (base, r.json())
        if status == 400:
            assert "--allow-host attacker.example" in r.json()["error"]
    rebinding = TestClient(app, base_url="http://attacker.example")
    add = rebinding.post("/v1/documents", json={"documents": [{"id": "x", "text": "X."}]})
    assert add.status_code == 400
    assert host_name("[::1]:80") == "::1" and host_name("LOCALHOST:1") == "localhost" and host_name("::1") == "::1"


@pytest.mark.parametrize("bad_id", ["../escape", "a/b", "nul\x00id", "ansi\x1b[31mred", "x" * 100_000])
def test_http_ids_follow_the_command_lines_rules(client, bad_id):
    r = client.post("/v1/documents", json={"documents": [{"id": bad_id, "text": "Some text."}]})
    assert r.status_code == 422 and "id" in r.json()["error"], r.json()
    assert len(r.text) < 2_000  # the error quotes a bounded piece of the id


def test_the_openai_endpoint_refuses_what_it_cannot_honour_and_reports_usage(client):
    def chat(**extra):
        return client.post("/v1/chat/completions", json={"model": "poly", "messages": [
            {"role": "user", "content": "Who built the bridge?"}], **extra})

    for extra in ({"max_tokens": 0}, {"tools": [{"type": "function", "function": {"name": "f"}}]},
                  {"response_format": {"type": "json_object"}}, {"stop": ["\n"]}, {"logprobs": True},
                  {"max_tokens": "many"}):
        r = chat(**extra)
        assert r.status_code == 400, (extra, r.json())
        assert r.json()["error"]["type"] == "invalid_request_error" and r.json()["error"]["message"]
    ok = chat(max_tokens=1, temperature=0.7, logprobs=False).json()  # sampling fields: greedy, ignored
    usage = ok["usage"]
    assert usage["prompt_tokens"] > 5 and usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert ok["choices"][0]["finish_reason"] == "length"  # cut at 1 token


def test_the_job_queue_and_registry_are_bounded(kb_folder, tmp_path, monkeypatch):
    from polyprag.service import state as serving_state
    from polyprag.service.state import Job

    monkeypatch.setattr(serving_state, "KEEP_JOBS", 3)
    app = create_app(shutil.copytree(kb_folder, tmp_path / "kb"), watch_s=0, limits=Limits(max_jobs=2))
    service, client = app.state.service, TestClient(app, base_url="http://127.0.0.1")
    release = threading.Event()
    monkeypatch.setattr(service, "_run", lambda job: release.wait(30) and 1)  # the worker holds its first job
    body = {"documents": [{"id": "y", "text": "Y is a hill."}]}
    assert client.post("/v1/documents", json=body).status_code == 202
    deadline = time.monotonic() + 10
    while service.queue.qsize():  # until the worker holds it
        assert time.monotonic() < deadline
        time.sleep(0.01)
    codes = [client.post("/v1/documents", json=body).status_code for _ in range(3)]
    release.set()
    assert codes == [202, 202, 429]  # one running, two queued, the next refused
    r = client.post("/v1/documents", json=body)
    assert r.status_code in (202, 429) and (r.status_code == 202 or r.headers["retry-after"])
    for i in range(6):  # finished jobs beyond KEEP_JOBS are forgotten, unfinished ones never
        done = Job("remove", [f"d{i}"])
        done.status = "done"
        service.jobs[done.id] = done
    service._forget_finished()
    assert sum(j.status == "done" for j in service.jobs.values()) == 2


def test_hostile_clients_get_4xx_while_honest_ones_get_every_answer(kb_folder, tmp_path, monkeypatch):
    from polyprag.service.loadtest import ATTACKS

    monkeypatch.setenv(API_KEY_ENV, "honest-key")
    folder = shutil.copytree(kb_folder, tmp_path / "kb")
    with live_server(create_app(folder)) as url:
        report = run_load(url, ["Who built the bridge?"], [], clients=2, seconds=4, max_new_tokens=2,
                          hostile=2, headers={"X-API-Key": "honest-key"}).summary()
    assert report["errors"] == 0 and report["requests"] > 0, report["error_examples"]
    assert report["hostile_failures"] == 0, report["hostile_failure_examples"]
    assert set(report["hostile"]) == set(ATTACKS) and report["hostile_requests"] >= len(ATTACKS)
    assert {d.name for d in folder.iterdir()} >= {"manifest.json"} and not any(
        "flood" in line or "inject" in line for line in (folder / "docs.jsonl").read_text().splitlines())


def test_a_client_that_disconnects_while_waiting_costs_no_generation(kb_folder, tmp_path, monkeypatch):
    from polyprag.service.api import ApiError
    from polyprag.service.serve import answered

    service = create_app(shutil.copytree(kb_folder, tmp_path / "kb"), watch_s=0).state.service
    generated = []
    monkeypatch.setattr(service, "_answer_group", lambda group, *a: generated.append(group))

    class Gone:  # the request of a client that has closed its connection
        async def is_disconnected(self) -> bool:
            return True

    def busy_model():  # someone else's generation holds the model for a second
        with service.lock:
            time.sleep(1.0)

    async def scenario():
        holder = threading.Thread(target=busy_model)
        holder.start()
        await asyncio.sleep(0.1)
        t0 = time.monotonic()
        with pytest.raises(ApiError) as e:
            await answered(Gone(), service, ["Who built the bridge?"], "rag", 1, 2, wait_s=30)
        waited = time.monotonic() - t0
        await asyncio.to_thread(holder.join)
        await asyncio.sleep(0.2)  # the worker thread sees its request withdrawn once the model is free
        return e.value, waited

    error, waited = asyncio.run(scenario())
    assert error.status == 499 and waited < 0.9  # refused while the model was still busy
    assert service.pending == [] and generated == []


@pytest.mark.parametrize("body, message", [
    ({"questions": ["Who?"] * 32, "k": 3}, "32 questions × k=3 = 96 passages to read; the budget is 64"),
    ({"questions": ["Who?"] * 16, "max_new_tokens": 128}, "= 2048 tokens to generate; the budget is 1024"),
])
def test_a_request_over_the_compute_budget_is_413_naming_it(client, body, message):
    r = client.post("/v1/answer", json=body)
    assert r.status_code == 413 and message in r.json()["error"], r.json()
