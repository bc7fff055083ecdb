"""Shared by the service tests: a tiny knowledge base on disk (the live server is `polyprag.service.loadtest`)."""

from pathlib import Path

from polyprag.lm.adapters import InventoryConfig
from polyprag.text.corpus import Document
from polyprag.kb.knowledge import BuildConfig, KnowledgeBase
from polyprag.lm.models import load_model
from polyprag.method.config import TrainConfig

DOCS = [Document("marlow", "Marlow Bridge", "Marlow Bridge was finished in 1862 by the engineer Ada Feld."),
        Document("velmark", "Velmark", "Velmark is a town on the river Tesk. It was founded in 1412 by Orrin Pell."),
        Document("glass", "Glass harp", "The glass harp was invented in 1741 by Richard Pockrich in Dublin.")]
NEW = {"id": "pell", "title": "Orrin Pell", "text": "Orrin Pell was a painter born in 1901 in Velmark."}
NEW_QUESTION = "Which painter was born in 1901?"
CONFIG = BuildConfig(inventory=InventoryConfig(n_adapters=4, rank=2), training=TrainConfig(epochs=2, batch_size=4))


def build_kb(model_dir: Path, folder: Path) -> Path:
    KnowledgeBase.build(DOCS, load_model(str(model_dir)), CONFIG, progress=False).save(folder)
    return folder


CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def chromium(window: str = "1000,1300"):
    """Debian's headless Chromium under selenium (also used by benchmarks/screenshot.py)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    # No sandbox: CI runs as root. No /dev/shm: containers give it 64 MB, too little for Chromium.
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--window-size={window}"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
