"""The draw-a-digit page of examples/web in real headless Chromium (selenium, Debian's chromium and
chromium-driver): real mouse input through the page's own pointer handlers, its own MNIST-style
preprocessing, onnxruntime-web (wasm) from the npm package, checked against Python onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

from bench.runtimes.js_host import web_reason

pytestmark = pytest.mark.skipif(web_reason() is not None, reason=str(web_reason()))

DIGITS = 20
PAD = 280  # the page's drawing pad, pad pixels (10 per MNIST pixel)


def strokes(image: np.ndarray) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """The ink of a 28x28 MNIST image as horizontal pen strokes in pad pixels: one stroke per run
    of pixels >= 128 in a row, through the pixel centres."""
    out = []
    for y, row in enumerate(image >= 128):
        x = 0
        while x < 28:
            if row[x]:
                start = x
                while x + 1 < 28 and row[x + 1]:
                    x += 1
                out.append(((start * 10 + 5.0, y * 10 + 5.0), (x * 10 + 5.0, y * 10 + 5.0)))
            x += 1
    return out


def draw(driver, pad, image: np.ndarray) -> None:
    """Real mouse input (WebDriver actions): press, move, release along each stroke."""
    from selenium.webdriver.common.action_chains import ActionChains

    actions = ActionChains(driver, duration=0)
    for (x0, y0), (x1, y1) in strokes(image):
        # offsets are from the element's centre, in CSS pixels (the pad is shown at 280x280)
        actions.move_to_element_with_offset(pad, int(x0 - PAD / 2), int(y0 - PAD / 2)).click_and_hold()
        actions.move_to_element_with_offset(pad, int(x1 - PAD / 2), int(y1 - PAD / 2)).release()
    actions.perform()


def test_the_page_classifies_digits_drawn_with_the_mouse(exported, mnist):
    import onnxruntime as ort
    from selenium.webdriver.common.by import By

    from bench.portability.demo import demo_mounts
    from bench.runtimes.js_host import StaticServer, chrome
    from models.paths import artifacts_dir, export_dir

    session = ort.InferenceSession(
        str(exported.verified_path("model_uint8", "onnx")), providers=["CPUExecutionProvider"]
    )
    screenshot = artifacts_dir() / "screenshots" / "web-demo.png"
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    with StaticServer(demo_mounts(export_dir())) as server:
        driver = chrome(760, 620)
        try:
            driver.set_script_timeout(60)
            driver.get(server.url + "app/")
            driver.execute_async_script(
                "const done = arguments[0];"
                "(function wait() { window.demoReady ? done(true) : setTimeout(wait, 20); })();"
            )
            pad = driver.find_element(By.ID, "pad")
            for i in range(DIGITS):
                driver.execute_script("window.demo.clear()")
                draw(driver, pad, mnist.test_images[i])
                # the page classifies after each stroke; this waits for the drawing as it ends
                result = driver.execute_async_script("window.demo.classify().then(arguments[0])")
                pixels = np.array(result["pixels"], dtype=np.uint8).reshape(1, 28, 28)
                assert pixels.max() == 255 and pixels.sum() > 0, f"digit {i}: nothing reached the model"
                probabilities, label = session.run(None, {"pixels": pixels})
                page = np.array(result["probabilities"], dtype=np.float64)
                assert np.abs(page - probabilities[0]).max() <= 1e-4, f"digit {i}"
                assert result["label"] == int(label[0]) == int(mnist.test_labels[i]), f"digit {i}"
                bars = [
                    float(li.get_attribute("data-probability"))
                    for li in driver.find_elements(By.CSS_SELECTOR, "#bars li")
                ]
                assert bars == pytest.approx(list(page), abs=1e-7) and len(bars) == 10
                assert driver.find_element(By.ID, "answer").text == str(result["label"])
            driver.save_screenshot(str(screenshot))
        finally:
            driver.quit()
    assert screenshot.stat().st_size > 0
