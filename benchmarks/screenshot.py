"""A screenshot of the web page answering a question, with a real knowledge base (headless Debian Chromium).

    .venv/bin/python benchmarks/screenshot.py KB OUT.png "Who built the clock of Quellmoor's town hall?"

Serves a temporary copy of KB on loopback, asks in the page in poly mode and saves the screenshot.
"""

import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from serving import chromium  # noqa: E402 (the same browser set-up as the browser test)

from polyprag.service.loadtest import live_server  # noqa: E402
from polyprag.service.serve import create_app  # noqa: E402


def main(kb: str, out: str, question: str, mode: str = "poly") -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "kb"
        shutil.copytree(kb, folder)
        browser = chromium("1000,1000")
        try:
            with live_server(create_app(folder, dtype="float32")) as url:
                browser.get(url + "/")
                find, wait = browser.find_element, WebDriverWait(browser, 300)
                wait.until(lambda d: "documents" in find(By.ID, "health").text)
                find(By.ID, "question").send_keys(question)
                Select(find(By.ID, "mode")).select_by_value(mode)
                find(By.ID, "ask").click()
                wait.until(lambda d: find(By.ID, "answer").text or find(By.ID, "ask-error").text)
                browser.save_screenshot(out)
                print(f"answer: {find(By.ID, 'answer').text!r}; wrote {out}")
        finally:
            browser.quit()


if __name__ == "__main__":
    main(*sys.argv[1:])
