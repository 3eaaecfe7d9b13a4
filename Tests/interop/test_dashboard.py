"""The live dashboard in real headless Chromium: it loads, shows an allocation a test client creates (with
its user), keeps updating, and renders something (the screenshot is not blank)."""
import io
import time

from PIL import Image

from conftest import free_port, turn_server_args
from stun import TurnClient
from test_browser_example import chrome


def test_dashboard_shows_a_live_allocation_in_chromium(start_server, turn_peer, tmp_path):
    port = free_port()
    s = start_server(*turn_server_args(port, "--auth.users", "dashboard-user=pw", "--turn.allow_peers", "127.0.0.1"))
    browser = chrome()
    browser.set_window_size(1280, 1000)
    client = TurnClient(port, "dashboard-user", "pw")
    try:
        browser.get(f"http://127.0.0.1:{s.signaling_port}/dashboard")
        assert "webrtc-server" in browser.title

        def updates():
            return int(browser.execute_script("return Number(document.body.dataset.updates || 0)"))

        def wait(condition, what, timeout=20):
            deadline = time.monotonic() + timeout
            while not condition():
                assert time.monotonic() < deadline, f"dashboard never showed {what}: {browser.find_element('tag name', 'body').text}"
                time.sleep(0.1)

        wait(lambda: updates() >= 1, "an update")
        assert "dashboard-user" not in browser.find_element("id", "alloc").text
        assert client.allocate()["type"] == 0x0103
        client.create_permission("127.0.0.1")
        for _ in range(20):
            client.send("127.0.0.1", turn_peer, b"z" * 500)
            client.receive_data()
        # The allocation appears with its user and transport, pushed by the server (no reload).
        wait(lambda: "dashboard-user" in browser.find_element("id", "alloc").text, "the allocation")
        row = browser.find_element("id", "alloc").text
        assert "udp" in row and "127.0.0.1" in row
        assert browser.find_element("id", "allocations").text == "1"
        seen = updates()
        wait(lambda: updates() >= seen + 2, "further updates")
        png = browser.get_screenshot_as_png()
        (tmp_path / "dashboard.png").write_bytes(png)
        image = Image.open(io.BytesIO(png)).convert("RGB")
        colours = image.getcolors(maxcolors=1 << 20)
        assert image.size[0] > 300 and image.size[1] > 300
        assert colours is None or len(colours) > 20, "the screenshot is (nearly) blank"
        # Most of the page is not one colour.
        assert colours is None or max(n for n, _ in colours) < 0.9 * image.size[0] * image.size[1]
    finally:
        browser.quit()
        client.close()
