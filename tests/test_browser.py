"""Notebook 07's viewers as a person uses them: JupyterLab on 127.0.0.1, a real headless Chromium.

The test trains a small shapes detector where notebook 06 would have left it and serves
notebook 07 from JupyterLab. First the notebook as committed, opened without running it, as a
reader meets it (a fresh page, a clone): each viewer cell shows its still picture, and no
output says "model not found" or "VBox(". The same notebook with its widget views left in,
trusted as JupyterLab trusts a notebook it saved after a run, shows JupyterLab's "model not
found" in their place: why ``tools/strip_widget_state.py`` takes them out. Then it runs the
notebook from the Run menu (quick mode), and, in the page: every cell ran without an error,
the viewer's controls are there (no "Loading widget...", no "Error displaying widget"),
moving the position slider, the NMS threshold and the matching IoU redraws the picture, and
the browser's console shows no error. Then, in a window of 1024 x 700 and of 1366 x 768
pixels with JupyterLab's file browser open, no control of either viewer is cut off or
scrolls, every slider keeps a usable track, and at 1366 x 768 the box viewer's controls and
picture fit on the screen together. Screenshots go to ``runs/browser-test/`` (or
``$FCOS_ARTIFACTS``).

It needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` package; without
them it is skipped, saying what is missing, unless ``FCOS_BROWSER_TEST=required`` (set by
``.ci/run``, which installs them) turns the skip into a failure.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = os.environ.get("FCOS_BROWSER_TEST") == "required"
ARTIFACTS = Path(os.environ.get("FCOS_ARTIFACTS", ROOT / "runs")) / "browser-test"
WINDOW, READING_WINDOW = (1400, 1000), (1400, 6000)      # pixels: the window, and a tall one


def _missing(what: str) -> None:
    message = (f"browser test: {what}. Install Debian's chromium and chromium-driver "
               "(apt-get install chromium chromium-driver) and `pip install selenium`")
    if REQUIRED:
        pytest.fail(f"{message} (FCOS_BROWSER_TEST=required: it may not be skipped)")
    pytest.skip(message)


def _tools() -> tuple[str, str]:
    chromium = os.environ.get("FCOS_CHROMIUM") or shutil.which("chromium") or shutil.which(
        "chromium-browser")
    driver = os.environ.get("FCOS_CHROMEDRIVER") or shutil.which("chromedriver")
    if not chromium or not driver:
        _missing(f"{'chromium' if not chromium else 'chromedriver'} was not found on the PATH")
    if importlib.util.find_spec("selenium") is None:
        _missing("the selenium package is not installed")
    return chromium, driver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(runs: Path) -> Path:
    """A detector worth looking at, where notebook 07 looks for notebook 06's quick run."""
    from fcos_lib.config import get_preset
    from fcos_lib.train import train

    cfg = get_preset("shapes", out=str(runs / "notebook06-shapes-quick"), steps=300,
                     image_size=64, batch_size=16, dataset_kwargs={"length": 64},
                     eval_images=16)
    return train(cfg, progress=False)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab serving a copy of notebook 07, with a trained run; yields its address."""
    chromium, driver = _tools()
    root = tmp_path_factory.mktemp("lab")
    shutil.copy(ROOT / "notebooks" / "07_evaluate.ipynb", root)
    port, token = _free_port(), "fcos-browser-test"
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}    # the inline backend
    # Its own data folder: the notebooks it trusts (signatures) are the test's own.
    env.update(FCOS_QUICK="1", FCOS_RUNS=str(root / "runs"), TQDM_DISABLE="1",
               JUPYTER_DATA_DIR=str(root / "data"),
               JUPYTER_CONFIG_DIR=str(root / "config"), JUPYTERLAB_SETTINGS_DIR=str(
                   root / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(root / "workspaces"))
    # No announcements: they would fetch news from the internet.
    (root / "settings" / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
    (root / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
     ).write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    log = open(root / "lab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root",
         "--LabApp.extension_manager=readonly", "--ip=127.0.0.1",
         f"--port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        checkpoint = _train(root / "runs")           # while JupyterLab starts
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None:
                    pytest.fail(f"JupyterLab stopped: {(root / 'lab.log').read_text()[-2000:]}")
                time.sleep(0.5)
        else:
            pytest.fail("JupyterLab did not answer within 60 s")
        yield dict(url=url, token=token, root=root, chromium=chromium, driver=driver,
                   checkpoint=checkpoint)
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="module")
def browser(lab):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = lab["chromium"]
    # As root, without a GPU, on a closed network: no sandbox, no background connections.
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=%d,%d" % WINDOW,
                 f"--user-data-dir={lab['root'] / 'chromium'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(lab["driver"]), options=options)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


def _wait(condition, seconds: float, what: str, every: float = 0.5):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"waited {seconds:.0f} s for {what}")


class Page:
    """Notebook 07 in JupyterLab, as a person sees it and clicks it."""

    def __init__(self, driver, lab):
        from selenium.webdriver.common.by import By

        self.driver, self.by, self.lab = driver, By, lab
        ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def find(self, css, within=None):
        return (within or self.driver).find_elements(self.by.CSS_SELECTOR, css)

    def prompts(self) -> list[str]:
        return [p.text.strip() for p in self.find(".jp-CodeCell .jp-InputPrompt")]

    def run_all_from_the_menu(self) -> float:
        start = time.monotonic()
        run = [m for m in self.find(".lm-MenuBar-item") if m.text == "Run"]
        assert run, "JupyterLab's menu bar has no Run menu"
        run[0].click()
        _wait(lambda: self.find('.lm-Menu-item[data-command="runmenu:run-all"]'), 10,
              "the Run menu to open")[0].click()
        _wait(lambda: "[*]:" in self.prompts(), 20, "the cells to start running")
        _wait(lambda: "[*]:" not in self.prompts(), 900, "the notebook to finish running")
        return time.monotonic() - start

    def slider(self, name: str):
        found = [s for s in self.find(".widget-slider")
                 if self.find("label", s) and self.find("label", s)[0].text == name]
        assert found, f"no slider {name!r} in the viewer"
        return found[0]

    def set_slider(self, name: str, value) -> None:
        """Type the value into the slider's readout, as a person can, and press Enter."""
        from selenium.webdriver.common.keys import Keys

        readout = self.find(".widget-readout", self.slider(name))[0]
        readout.click()
        readout.send_keys(Keys.CONTROL, "a")
        readout.send_keys(str(value), Keys.ENTER)

    def picture(self) -> bytes:
        """The PNG the viewer's image element shows, as the page holds it."""
        image = self.find("img.widget-image")[0]
        data = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch(arguments[0].src).then(r => r.arrayBuffer()).then(b => {"
            "  let s = ''; const a = new Uint8Array(b);"
            "  for (let i = 0; i < a.length; i++) s += String.fromCharCode(a[i]);"
            "  done(btoa(s)); }).catch(e => done('error: ' + e));", image)
        assert not data.startswith("error"), data
        import base64

        return base64.b64decode(data)

    def select(self, name: str):
        """The ``<select>`` of the dropdown labelled ``name``."""
        from selenium.webdriver.support.ui import Select

        found = [d for d in self.find(".widget-dropdown")
                 if self.find("label", d) and self.find("label", d)[0].text == name]
        assert found, f"no dropdown {name!r} in the viewer"
        return Select(self.find("select", found[0])[0])

    def sizes(self) -> tuple[int, int]:
        """The picture's own width and its width on the page, pixels."""
        return tuple(round(v) for v in self.driver.execute_script(
            "const i = arguments[0]; return [i.naturalWidth, i.getBoundingClientRect().width];",
            self.find("img.widget-image")[0]))

    def info(self) -> str:
        return self.find(".widget-html")[0].text

    def shot(self, name: str) -> None:
        image = self.find("img.widget-image")
        if image:
            self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})",
                                       image[0])
        self.driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))

    def console_errors(self) -> list[str]:
        """The console's errors, but for resources of other hosts, which the closed network of
        a test machine refuses (the Colab badge's picture)."""
        errors = []
        for entry in self.driver.get_log("browser"):
            if entry["level"] != "SEVERE":
                continue
            if entry["source"] == "network" and not entry["message"].startswith(self.lab["url"]):
                continue
            errors.append(entry["message"])
        return errors


def _pixels(png: bytes) -> torch.Tensor:
    import io

    import numpy as np
    from PIL import Image

    return torch.from_numpy(np.array(Image.open(io.BytesIO(png)).convert("RGB"))).permute(2, 0, 1)


def _plain(html: str) -> str:
    import re

    return " ".join(re.sub(r"<[^>]+>", "", html).split())


# The outputs of the notebook on the page that JupyterLab has attached: their words, and their
# pictures' data and drawn width; and a scroll of the notebook by arguments[0] screens.
OUTPUTS_SCRIPT = """
const outputs = [...document.querySelectorAll('.jp-OutputArea-output')];
return {text: outputs.map(o => o.textContent).join('\\n'),
        images: [...document.querySelectorAll('.jp-OutputArea-output img')].map(
          i => [i.getAttribute('src'), i.naturalWidth])};
"""
SCROLL_SCRIPT = """
const panel = document.querySelector(
  '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer');
const before = panel.scrollTop;
panel.scrollTop = before + arguments[0] * panel.clientHeight;
return panel.scrollTop != before;
"""
# The output picture whose data URL is arguments[0], or else the output that says it, scrolled
# to the middle of the page, if attached.
CENTER_SCRIPT = """
const outputs = [...document.querySelectorAll('.jp-OutputArea-output')];
const found = [...document.querySelectorAll('.jp-OutputArea-output img')].find(
  i => i.getAttribute('src') === arguments[0]) || outputs.find(
  o => o.textContent.includes(arguments[0]));
if (found) found.scrollIntoView({block: 'center'});
return Boolean(found);
"""


def _viewer_pictures(path: Path) -> list[str]:
    """The base64 PNG of each viewer cell's output in the notebook at ``path``."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    return [o["data"]["image/png"].replace("\n", "") for c in nb.cells if c.cell_type == "code"
            and ("BoxViewer(" in c.source or "PhotoViewer(" in c.source)
            for o in c.outputs if "image/png" in o.get("data", {})]


def _read_unrun(browser, lab, name: str) -> tuple[dict[str, int], str]:
    """``name`` opened in a workspace of its own and left unrun, read from top to bottom once
    its kernel is idle (JupyterLab attaches only the cells near the view): each picture of
    its outputs (data URL: the widest it was drawn) and the words of its outputs. It is read
    in a window 6000 px tall, a few screens for the whole notebook (at 1000 px, 37 screens
    took 15 s), and the window is set back to 1400 x 1000 after."""
    browser.set_window_size(*READING_WINDOW)
    try:
        return _read(browser, lab, name)
    finally:
        browser.set_window_size(*WINDOW)


def _read(browser, lab, name: str) -> tuple[dict[str, int], str]:
    page = Page(browser, lab)
    browser.get(f"{lab['url']}/lab/workspaces/{name.split('.')[0]}/tree/{name}"
                f"?token={lab['token']}")
    _wait(lambda: len(page.find(".jp-CodeCell")) > 10 and "Idle" in browser.find_element(
        page.by.ID, "jp-main-statusbar").text, 120, f"{name} to open with an idle kernel")
    time.sleep(2)              # (the widget manager restores once the kernel is connected)
    pictures: dict[str, int] = {}
    words = []
    for _ in range(500):
        time.sleep(0.3)                               # (attached cells render, images decode)
        shown = browser.execute_script(OUTPUTS_SCRIPT)
        for src, width in shown["images"]:
            pictures[src] = max(width, pictures.get(src, 0))
        words.append(shown["text"])
        if not browser.execute_script(SCROLL_SCRIPT, 0.8):
            break
    return pictures, "\n".join(words)


def _shot_of(browser, lab, shown: str, name: str) -> None:
    """A screenshot with an output in the middle, scrolling up to find it: the picture whose
    data URL is ``shown``, or the output that says ``shown``."""
    for _ in range(500):
        if browser.execute_script(CENTER_SCRIPT, shown):
            time.sleep(0.5)
            break
        if not browser.execute_script(SCROLL_SCRIPT, -0.8):
            break
        time.sleep(0.2)
    Page(browser, lab).shot(name)


def _shut_kernels_of(lab, names: set[str]) -> None:
    """Stop the kernels that opening ``names`` started (the REST API of Jupyter Server)."""
    sessions = json.load(urllib.request.urlopen(f"{lab['url']}/api/sessions?token={lab['token']}"))
    for session in sessions:
        if session["path"] in names:
            urllib.request.urlopen(urllib.request.Request(
                f"{lab['url']}/api/sessions/{session['id']}?token={lab['token']}",
                method="DELETE"))


def test_the_committed_notebook_unrun_shows_still_pictures_of_the_viewers(lab, browser):
    """Opened without running, as a clone gives it, each viewer cell shows its still picture,
    whole, and no output says "model not found" or "VBox(". With its widget views left in, the
    same notebook, trusted (as JupyterLab trusts one that it saved after running it), shows
    JupyterLab's error in their place and no picture: it never falls back to the picture."""
    import nbformat
    from nbformat.sign import NotebookNotary

    from fcos_lib.photo_viewer import STILL_NOTE, WIDGET_VIEW

    saved = lab["root"] / "saved.ipynb"
    shutil.copy(ROOT / "notebooks" / "07_evaluate.ipynb", saved)
    stills = [f"data:image/png;base64,{png}" for png in _viewer_pictures(saved)]
    assert len(stills) == 2, f"{len(stills)} still pictures in the viewer cells, not 2"
    nb = nbformat.read(saved, as_version=4)
    for cell in nb.cells:                       # the views, as the kernel published them
        for output in cell.get("outputs", []):
            if STILL_NOTE in "".join(output.get("data", {}).get("text/plain", "")):
                output["data"][WIDGET_VIEW] = {"version_major": 2, "version_minor": 0,
                                               "model_id": "0123456789abcdef0123456789abcdef"}
    nbformat.write(nb, lab["root"] / "unstripped.ipynb")
    NotebookNotary(data_dir=str(lab["root"] / "data")).sign(nb)    # as if saved here after a run
    try:
        pictures, words = _read_unrun(browser, lab, "saved.ipynb")
        assert len(pictures) > 5, f"only {len(pictures)} pictures seen: the page was not read"
        for still in stills:
            assert still in pictures, "a viewer's still picture is not on the page"
            assert pictures[still] > 300, f"a still picture drawn {pictures[still]} px wide"
        for said in ("model not found", "Error displaying widget", "Loading widget", "VBox("):
            assert said not in words, f"an output says {said!r}"
        _shot_of(browser, lab, stills[0], "0-saved-unrun")

        pictures, words = _read_unrun(browser, lab, "unstripped.ipynb")
        _wait(lambda: "model not found" in browser.execute_script(OUTPUTS_SCRIPT)["text"], 30,
              "JupyterLab to say it found no model for the photo viewer's view")
        assert "Error displaying widget: model not found" in words + browser.execute_script(
            OUTPUTS_SCRIPT)["text"]
        assert not set(stills) & set(pictures), "JupyterLab fell back to the still picture"
        _shot_of(browser, lab, "model not found", "0-unstripped-unrun")
    finally:
        _shut_kernels_of(lab, {"saved.ipynb", "unstripped.ipynb"})
        browser.get("about:blank")       # (leaving the page logs that it asked to stay)
        browser.get_log("browser")       # (the errors meant here, not the run's to report)


@pytest.fixture(scope="module")
def ran(lab, browser):
    """Notebook 07 opened in the browser and run from the menu: the page, and the seconds."""
    page = Page(browser, lab)
    browser.get(f"{lab['url']}/lab/tree/07_evaluate.ipynb?token={lab['token']}")
    _wait(lambda: len(page.find(".jp-CodeCell")) > 10 and "Idle" in browser.find_element(
        page.by.ID, "jp-main-statusbar").text, 120, "the notebook to open with an idle kernel")
    seconds = page.run_all_from_the_menu()
    page.shot("1-after-run-all")
    return page, seconds


def test_the_viewer_in_a_real_browser(lab, browser, ran, capsys):
    """Run All from the menu, then the viewer answers its controls with the library's pictures."""
    from fcos_lib.config import TrainConfig
    from fcos_lib.model import FCOS
    from fcos_lib.train import build_datasets
    from fcos_lib.viewer import BoxViewer

    page, seconds = ran
    prompts = page.prompts()
    assert all(p[1:-2].isdigit() for p in prompts), f"cells not run: {prompts}"
    errors = [e.text[:500] for e in page.find(
        '[data-mime-type="application/vnd.jupyter.stderr"], .jp-RenderedError')]
    assert not errors, f"the notebook printed errors or warnings: {errors}"
    body = browser.find_element(page.by.TAG_NAME, "body").text
    assert "Error displaying widget" not in body and "Loading widget" not in body
    pictures = page.find("img.widget-image")       # the box viewer's, then the photo's
    assert len(pictures) == 2, f"{len(pictures)} widget pictures on the page, not 2"
    photo = browser.execute_script("return [arguments[0].naturalWidth, arguments[0]"
                                   ".naturalHeight, arguments[0].getBoundingClientRect().width]",
                                   pictures[1])
    assert photo == [480, 240, 480], f"the sample photo shown as {photo}, not whole at 480 x 240"
    for name in ("position", "score >", "NMS IoU", "match IoU"):
        assert page.slider(name).is_displayed()
    for name, first in (("order", "by number"), ("classes", "all classes"), ("maps", "no level")):
        assert page.select(name).first_selected_option.text == first   # not blank
    natural, shown = page.sizes()
    assert natural == shown, f"the picture is stretched: {natural} px drawn {shown} px wide"

    # The same viewer in this process, on the same run: what the page must show.
    model, config = FCOS.from_checkpoint(lab["checkpoint"])
    (val_set,) = build_datasets(TrainConfig(**config["train"]), ("val",), progress=False)
    here = BoxViewer(model, val_set)
    assert torch.equal(_pixels(page.picture()), here.last_view)
    assert page.info() == _plain(here.info.value)

    # An image where a looser NMS keeps more boxes and a stricter match turns some red.
    def counts(i, nms, iou):
        here.position.value, here.nms.value, here.iou.value = i, nms, iou
        return len(here.last_detections["boxes"]), _plain(here.info.value)

    chosen = next((i for i in range(1, len(val_set))
                   if counts(i, 0.6, 0.5)[0] != counts(i, 0.95, 0.5)[0]
                   and counts(i, 0.95, 0.5)[1] != counts(i, 0.95, 0.9)[1]), None)
    assert chosen is not None, "no validation image where NMS and the match IoU matter"
    steps = [("position", chosen, dict(position=chosen, nms=0.6, iou=0.5)),
             ("NMS IoU", 0.95, dict(position=chosen, nms=0.95, iou=0.5)),
             ("match IoU", 0.9, dict(position=chosen, nms=0.95, iou=0.9))]
    timings = []
    for k, (control, value, state) in enumerate(steps, 2):
        shown = page.picture()
        start = time.monotonic()
        page.set_slider(control, value)
        _wait(lambda shown=shown: page.picture() != shown, 30,
              f"the picture to change after {control}", every=0.02)
        timings.append(1000 * (time.monotonic() - start))
        here.position.value, here.nms.value, here.iou.value = (state["position"], state["nms"],
                                                               state["iou"])
        assert torch.equal(_pixels(page.picture()), here.last_view), control
        assert page.info() == _plain(here.info.value), control
        page.shot(f"{k}-{control.replace(' ', '-')}-{value}")
    assert page.info().startswith(f"image {chosen} (position {chosen} of {len(val_set)}, by "
                                  "number):")           # the slider's number, and the image's
    # A level's maps beside the picture, then no level again (the dropdown is not blank).
    shown = page.picture()
    page.select("maps").select_by_visible_text(f"{here.view.level_names[0]} (stride 8)")
    _wait(lambda: page.picture() != shown, 30, "the maps to appear")
    here.level.value = 0
    assert torch.equal(_pixels(page.picture()), here.last_view) and page.info() == _plain(
        here.info.value)
    assert page.sizes() == (here.last_view.shape[2],) * 2     # wider, and not stretched
    page.shot("5-maps-P3")
    page.select("maps").select_by_visible_text("no level")
    _wait(lambda: page.picture() == shown, 30, "the maps to go")
    assert page.select("maps").first_selected_option.text == "no level"
    assert page.console_errors() == []
    with capsys.disabled():
        print(f"\nbrowser: Run All {seconds:.0f} s (quick mode); redraws seen after position, "
              f"NMS, match IoU: {', '.join(f'{t:.0f} ms' for t in timings)} (typed, to the new "
              f"picture on the page); screenshots in {ARTIFACTS}")


# What the page says of the viewers' controls at the window's size (ipywidgets 8's classes).
LAYOUT_SCRIPT = """
const rows = [...document.querySelectorAll('.fcos-controls')];
const browser = document.querySelector('#filebrowser');
const notebook = document.querySelector('.jp-NotebookPanel .jp-WindowedPanel-outer');
return {
  inner: [innerWidth, innerHeight],
  fileBrowser: browser ? browser.getBoundingClientRect().width : 0,
  notebookHeight: notebook ? notebook.clientHeight : 0,
  rows: rows.map(row => {
    const box = row.getBoundingClientRect();
    return {left: box.left, right: box.right, top: box.top, scroll: row.scrollWidth,
            client: row.clientWidth,
            controls: [...row.children].map(c => {
              const r = c.getBoundingClientRect(), label = c.querySelector('label');
              return {name: (label && label.textContent) || c.textContent.trim().slice(0, 30),
                      left: r.left, right: r.right, width: r.width, height: r.height};
            }),
            tracks: [...row.querySelectorAll('.slider-container')].map(
              t => t.getBoundingClientRect().width)};
  }),
  pictures: [...document.querySelectorAll('img.widget-image')].map(
    i => i.getBoundingClientRect().bottom),
};
"""


@pytest.mark.parametrize("width, height", [(1024, 700), (1366, 768)])
def test_the_controls_fit_a_small_screen_with_the_file_browser_open(ran, browser, width,
                                                                      height):
    """No control cut off or scrolled, no slider squeezed to nothing; at 1366 x 768 the box
    viewer's controls and its picture fit on the screen together."""
    page, _ = ran
    browser.set_window_size(width, height)
    outer = browser.execute_script("return [outerWidth - innerWidth, outerHeight - innerHeight]")
    browser.set_window_size(width + outer[0], height + outer[1])     # the page's own size
    if not browser.execute_script("const f = document.querySelector('#filebrowser');"
                                  "return f && f.getBoundingClientRect().width > 0"):
        page.find('.jp-SideBar .lm-TabBar-tab[data-id="filebrowser"]')[0].click()

    def settled():
        found = browser.execute_script(LAYOUT_SCRIPT)
        return found if found["inner"] == [width, height] and found["fileBrowser"] > 100 and \
            len(found["rows"]) == 2 else None
    found = _wait(settled, 20, f"the page at {width} x {height} with the file browser open")
    time.sleep(1)                            # (JupyterLab lays out once more after a resize)
    found = browser.execute_script(LAYOUT_SCRIPT)
    rows = found["rows"]
    page.driver.execute_script("arguments[0].scrollIntoView({block: 'start'})",
                               page.find(".fcos-controls")[0])
    browser.save_screenshot(str(ARTIFACTS / f"6-controls-{width}x{height}.png"))
    for row in rows:
        assert row["scroll"] <= row["client"] + 1, f"a control row scrolls: {row}"
        for control in row["controls"]:
            assert control["width"] > 0 and control["height"] > 0, control
            assert row["left"] - 1 <= control["left"] and control["right"] <= row["right"] + 1, \
                f"{control['name']!r} is cut off at {width} x {height}: {control}, row {row}"
            assert control["right"] <= width, control
        assert all(track >= 80 for track in row["tracks"]), f"a slider squeezed: {row['tracks']}"
    assert len(rows[0]["tracks"]) == 4 and len(rows[1]["tracks"]) == 1    # every slider there
    if (width, height) == (1366, 768):       # the box viewer: its controls, then its picture
        tall = found["pictures"][0] - rows[0]["top"]
        assert tall <= found["notebookHeight"], (
            f"the controls and the picture take {tall:.0f} px; the notebook shows "
            f"{found['notebookHeight']} px at {width} x {height}")
