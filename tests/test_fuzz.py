"""Property-based fuzzing of the HTTP API (hypothesis): whatever a client sends — wrong types, unknown fields,
odd paths, bad keys, garbage bytes — the answer is a JSON object with a documented status, errors carry an
"error" message and never a stack trace, and the server keeps serving. Then the answer lock's timeout."""

import threading
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serving import build_kb

from polyprag.service.serve import API_KEY_ENV, Limits, create_app

ALLOWED = {200, 202, 400, 401, 404, 405, 413, 422}
KEY = "fuzz-key"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12)
questions = st.text(max_size=60) | st.sampled_from(["Who finished Marlow Bridge?", "", "   ", "x" * 2001])
answer_bodies = st.fixed_dictionaries({}, optional={
    "question": questions | json_values, "questions": st.lists(questions, max_size=40) | json_values,
    "k": st.integers(-5, 50) | json_values, "mode": st.sampled_from(["poly", "rag", "closed-book", "nope"]) | json_values,
    "max_new_tokens": st.integers(-2, 200) | json_values}) | json_values
doc_ids = st.text(min_size=0, max_size=20)
documents = st.fixed_dictionaries({"id": doc_ids | json_values, "text": st.text(max_size=80) | json_values},
                                  optional={"title": st.text(max_size=20) | json_values, "extra": json_values})
document_bodies = st.fixed_dictionaries({"documents": st.lists(documents, max_size=3) | json_values}) | json_values
keys = st.sampled_from([KEY, "", "wrong", KEY + " "])
path_parts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)


@pytest.fixture(scope="module")
def client(tiny_chat_model_dir, tmp_path_factory):
    folder = build_kb(tiny_chat_model_dir, tmp_path_factory.mktemp("fuzz") / "kb")
    limits = Limits(max_refusals=0)  # fuzzing sends refused requests by the hundred: the throttle would answer them
    return TestClient(create_app(folder, limits=limits), raise_server_exceptions=False, base_url="http://127.0.0.1")


def check(r) -> dict:
    assert r.status_code in ALLOWED, (r.status_code, r.text[:500])
    body = r.json()
    assert isinstance(body, dict)
    if r.status_code >= 400:
        assert isinstance(body.get("error"), str) and body["error"], body
    assert "Traceback" not in r.text and 'File "' not in r.text
    return body


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])


@FUZZ
@given(body=answer_bodies)
def test_fuzzed_answer_requests(client, body):
    check(client.post("/v1/answer", json=body))


@FUZZ
@given(body=document_bodies, key=keys)
def test_fuzzed_document_additions_need_the_key_and_valid_documents(client, body, key, monkeypatch):
    monkeypatch.setenv(API_KEY_ENV, KEY)
    r = client.post("/v1/documents", json=body, headers={"X-API-Key": key})
    check(r)
    if key != KEY:
        assert r.status_code == 401


@FUZZ
@given(part=path_parts, method=st.sampled_from(["GET", "DELETE"]), key=keys)
def test_fuzzed_paths(client, part, method, key, monkeypatch):
    monkeypatch.setenv(API_KEY_ENV, KEY)
    part = quote(part, safe="/")  # as an HTTP client sends it; the server decodes it again
    check(client.request(method, "/v1/documents/" + part, headers={"X-API-Key": key}))
    check(client.get("/v1/jobs/" + part))


@FUZZ
@given(raw=st.binary(max_size=300), content_type=st.sampled_from(["application/json", "text/plain", "", "a/b"]))
def test_garbage_bytes(client, raw, content_type):
    check(client.post("/v1/answer", content=raw, headers={"Content-Type": content_type}))


def test_the_server_still_answers_after_the_fuzzing(client):
    body = check(client.post("/v1/answer", json={"question": "Who finished Marlow Bridge?", "max_new_tokens": 4}))
    assert body["answers"][0]["documents"][0]["id"] == "marlow"
    assert check(client.get("/health"))["ok"]


def test_a_request_that_waits_too_long_for_the_model_gets_a_503(tiny_chat_model_dir, tmp_path):
    folder = build_kb(tiny_chat_model_dir, tmp_path / "kb")
    app = create_app(folder, limits=Limits(answer_wait_s=0.2))
    client = TestClient(app, base_url="http://127.0.0.1")
    service = app.state.service
    with service.lock:  # another request is holding the model
        done = threading.Event()
        result = {}
        worker = threading.Thread(target=lambda: (result.update(r=client.post(
            "/v1/answer", json={"question": "Who?", "max_new_tokens": 2})), done.set()))
        worker.start()
        assert done.wait(30)
    r = result["r"]
    assert r.status_code == 503 and "busy" in r.json()["error"] and "retry" in r.json()["error"]
    assert client.post("/v1/answer", json={"question": "Who?", "max_new_tokens": 2}).status_code == 200
