"""Open an HTML page in headless Chromium and report how each of its images loaded."""

import json
import re
import shutil
import subprocess

#: The Chromium binary, or None where it is not installed.
CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(name)), None)


def images_in_chromium(page_path, tmp_path) -> list[dict]:
    """Open a copy of the page in headless Chromium, with a script added that records, once the page has loaded,
    each image's alt text, `complete` flag and natural size; return those records."""
    probe = tmp_path / "probe.html"
    script = ("<script>window.addEventListener('load', () => { document.body.setAttribute('data-images', "
              "JSON.stringify([...document.images].map(i => ({alt: i.alt, complete: i.complete, "
              "width: i.naturalWidth, height: i.naturalHeight})))); });</script>")
    probe.write_text(page_path.read_text(encoding="utf-8").replace("</body>", script + "</body>"), encoding="utf-8")
    result = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                             "--user-data-dir=" + str(tmp_path / "chromium-profile"), "--virtual-time-budget=5000",
                             "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    match = re.search(r'data-images="([^"]*)"', result.stdout)
    assert match, result.stderr[-3000:]
    return json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<")
                      .replace("&gt;", ">"))
