"""The web page in headless Debian Chromium: ask, see the answer, documents and routing bars; add a document.

Set POLYPRAG_SCREENSHOT=/path/shot.png to keep the screenshot (else it goes to the test's tmp folder).
"""

import os
from pathlib import Path

import pytest
from serving import CHROMEDRIVER, CHROMIUM, NEW, NEW_QUESTION, build_kb, chromium

from polyprag.service.loadtest import live_server
from polyprag.service.serve import create_app


@pytest.fixture
def browser():
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        reason = f"{', '.join(missing)} missing: install Debian chromium chromium-driver (apt-get install -y ...)"
        if os.environ.get("CI"):  # CI must run it: .ci/run installs them
            pytest.fail(reason)
        pytest.skip(reason)
    driver = chromium()
    yield driver
    driver.quit()


def test_ask_and_add_a_document_in_the_browser(browser, tiny_chat_model_dir, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    folder = build_kb(tiny_chat_model_dir, tmp_path / "kb")
    wait = WebDriverWait(browser, 120)
    find = browser.find_element
    with live_server(create_app(folder)) as url:
        browser.get(url + "/")
        wait.until(lambda d: "3 documents" in find(By.ID, "health").text)
        find(By.ID, "add-id").send_keys(NEW["id"])
        find(By.ID, "add-title").send_keys(NEW["title"])
        find(By.ID, "add-text").send_keys(NEW["text"])
        find(By.ID, "add").click()
        wait.until(lambda d: "done" in find(By.ID, "job-status").text or "failed" in find(By.ID, "job-status").text)
        assert "done" in find(By.ID, "job-status").text, find(By.ID, "job-status").text
        wait.until(lambda d: "4 documents" in find(By.ID, "health").text)

        find(By.ID, "question").send_keys(NEW_QUESTION)
        from polyprag.modes import SERVED

        wait.until(lambda d: len(Select(find(By.ID, "mode")).options) == len(SERVED))  # the page asked /v1/modes
        Select(find(By.ID, "mode")).select_by_value("poly")
        find(By.ID, "k").clear()
        find(By.ID, "k").send_keys("2")
        find(By.ID, "ask").click()
        wait.until(lambda d: find(By.ID, "answer").text and d.find_elements(By.CSS_SELECTOR, "#weights .bar"))
        docs = browser.find_elements(By.CSS_SELECTOR, "#docs li")
        assert docs[0].text.startswith("pell") and "BM25" in docs[0].text
        bars = browser.find_elements(By.CSS_SELECTOR, "#weights .bar")
        assert len(bars) == 4 and max(b.size["width"] for b in bars) > 0
        assert find(By.ID, "ask-error").text == ""
        shot = Path(os.environ.get("POLYPRAG_SCREENSHOT") or tmp_path / "polyprag-web.png")
        shot.parent.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 0
