"""The browser explorer on colour images and on data with named attributes (the lecture's faces)."""

from __future__ import annotations

import base64
import io
import json
import threading
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
from PIL import Image
from test_serve import chromium_or_skip, launch_chromium, request

from vae.data import DataSplits, Split
from vae.latent import attribute_vector, encode_images
from vae.serve import Explorer, ServeArgs, build_explorer, make_server, validation_attributes

from conftest import TINY, compose_config, make_vae

NAMES = ["Smiling", "Eyeglasses", "Bald", "Young"]  # Young: every validation image has it, so no vector


@pytest.fixture(scope="module")
def colour_run(tmp_path_factory):
    """One epoch on 3 x 32 x 32 synthetic images (about 1 s)."""
    from vae.train import train

    run_dir = tmp_path_factory.mktemp("colour_run")
    shape = ["data.image_shape=[3,32,32]", "data.num_train=64", "data.num_val=32", "data.num_test=32"]
    train(compose_config([*TINY, *shape, "epochs=1", "latent_dim=4"]), run_dir)
    return run_dir


def serving(explorer):
    httpd = make_server(explorer, "127.0.0.1", 0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


def png(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def decoded_pngs(url: str, z: list[list[float]]) -> list[Image.Image]:
    status, body = request(f"{url}/api/decode", json.dumps({"z": z}).encode())
    assert status == 200, body[:300]
    return [png(base64.b64decode(data.split(",", 1)[1])) for data in json.loads(body)["images"]]


def test_a_colour_run_serves_rgb_pngs_of_its_size(colour_run):
    explorer = build_explorer(ServeArgs(run=str(colour_run), points=16))
    httpd, url = serving(explorer)
    try:
        info = json.loads(request(f"{url}/api/info")[1])
        assert info["image_shape"] == [3, 32, 32] and info["latent_dim"] == 4
        z = [[0.5, -1.0, 0.0, 2.0], [0.0] * 4]
        images = decoded_pngs(url, z)
        assert [(image.mode, image.size) for image in images] == [("RGB", (32, 32))] * 2
        with torch.no_grad():
            expected = (torch.sigmoid(explorer.model.decode(torch.tensor(z))) * 255).round().to(torch.uint8)
        assert torch.equal(torch.from_numpy(np.array(images[0])), expected[0].permute(1, 2, 0))
        status, body = request(f"{url}/api/test_image/15.png")
        assert status == 200 and (png(body).mode, png(body).size) == ("RGB", (32, 32))
        assert np.array_equal(np.array(png(body)), explorer.test_images[15].permute(1, 2, 0).numpy())
        # synthetic data has no named attributes: each class against the rest, and thick strokes, from validation
        assert "thick strokes vs thin" in info["attributes"] and "class stroke 0 vs rest" in info["attributes"]
        assert info["attribute_split"] == "validation" and info["attribute_images"] == 32
    finally:
        httpd.shutdown()
        httpd.server_close()


def faces(image_shape=(3, 64, 64), seed: int = 0) -> DataSplits:
    """In-memory splits with four named attributes; validation and test drawn apart."""
    generator = torch.Generator().manual_seed(seed)

    def split(count: int) -> Split:
        images = torch.randint(0, 256, (count, *image_shape), generator=generator, dtype=torch.uint8)
        attributes = torch.rand(count, len(NAMES), generator=generator) < 0.5
        attributes[:, 0] = torch.arange(count) % 2 == 0
        attributes[:, 3] = True
        return Split(images, torch.zeros(count, dtype=torch.long), attributes)

    return DataSplits(split(24), split(20), split(12), class_names=["all"], attribute_names=NAMES)


@pytest.fixture(scope="module")
def face_explorer():
    splits = faces()
    model = make_vae(latent_dim=4, image_shape=(3, 64, 64), channels=(8, 16, 16, 16), hidden_dim=16)
    test = splits.test
    explorer = Explorer(
        model,
        test.images,
        test.labels,
        class_names=splits.class_names,
        points=10,
        attributes=validation_attributes(splits, val_source="official"),
        test_attributes={name: test.attributes[:, i] for i, name in enumerate(NAMES)},
    )
    return explorer, splits


def test_attribute_vectors_are_the_validation_splits_mean_differences_named_by_attribute(face_explorer):
    explorer, splits = face_explorer
    info = explorer.info
    assert list(info["attributes"]) == NAMES[:3]  # Young: no validation image without it
    assert info["attribute_split"] == "validation" and info["attribute_images"] == len(splits.val)
    assert info["default_attribute"] == "Smiling"
    val_mu = encode_images(explorer.model, splits.val.images).mean
    test_mu = encode_images(explorer.model, splits.test.images).mean
    for i, name in enumerate(NAMES[:3]):
        has = splits.val.attributes[:, i]
        expected = val_mu[has].mean(0) - val_mu[~has].mean(0)
        assert torch.allclose(torch.tensor(info["attributes"][name]), expected, atol=1e-6), name
        assert info["attribute_counts"][name] == [int(has.sum()), int((~has).sum())]
        on_test = attribute_vector(test_mu, splits.test.attributes[:, i])
        assert not torch.allclose(torch.tensor(info["attributes"][name]), on_test, atol=1e-4)  # not the test split's
    # the plane can be coloured by the picked attribute: the shown test images' 0/1
    assert info["points"]["attributes"]["Smiling"] == splits.test.attributes[:10, 0].int().tolist()
    assert "Young" not in info["points"]["attributes"]


def test_the_lectures_protocol_says_its_validation_split_is_the_test_split():
    splits = faces(image_shape=(1, 28, 28))
    splits = DataSplits(splits.train, splits.val, splits.test, class_names=["a", "b"])  # no attribute names
    splits.val.labels[::2] = 1
    source = validation_attributes(splits, val_source="test")
    assert source.split == "validation = test (the lecture's protocol)"
    assert list(source.groups) == ["class a vs rest", "class b vs rest", "thick strokes vs thin"]
    assert torch.equal(source.groups["class b vs rest"][0], splits.val.labels == 1)
    assert source.images is splits.val.images


def test_a_64x64_colour_explorer_decodes_rgb_64x64_and_edits_along_a_vector(face_explorer):
    explorer, _ = face_explorer
    httpd, url = serving(explorer)
    try:
        info = json.loads(request(f"{url}/api/info")[1])
        mu, s = np.array(info["test_mu"][3]), np.array(info["attributes"]["Smiling"])
        images = decoded_pngs(url, [(mu + k * s).tolist() for k in (-4.0, 0.0, 4.0)])
        assert [(image.mode, image.size) for image in images] == [("RGB", (64, 64))] * 3
        assert not np.array_equal(np.array(images[0]), np.array(images[2]))
        status, body = request(f"{url}/api/test_image/9.png")
        assert status == 200 and (png(body).mode, png(body).size) == ("RGB", (64, 64))
    finally:
        httpd.shutdown()
        httpd.server_close()


class Elements(HTMLParser):
    def __init__(self):
        super().__init__()
        self.by_id: dict[str, tuple[str, dict]] = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.by_id[attrs["id"]] = (tag, attrs)


def test_the_page_has_one_attribute_picker_and_one_k_slider(face_explorer):
    explorer, _ = face_explorer
    httpd, url = serving(explorer)
    try:
        status, body = request(url + "/")
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert status == 200
    page = Elements()
    page.feed(body.decode())
    assert page.by_id["edit-vector"][0] == "select"
    tag, slider = page.by_id["edit-k"]
    assert tag == "input" and slider["type"] == "range"
    assert (float(slider["min"]), float(slider["max"])) == (-4, 4) and float(slider["step"]) <= 0.5
    assert body.decode().count("<select") == 4  # interpolation's two ends, the edited image, the attribute
    assert body.decode().count('type="range"') == 2  # interpolation's t, and k (the latent sliders come from app.js)
    assert "edit-source" in page.by_id and "edit-thumb" in page.by_id


@pytest.mark.slow  # runs a browser in a subprocess
def test_the_k_slider_decodes_a_new_colour_image_in_headless_chromium(face_explorer):
    playwright = chromium_or_skip()
    explorer, _ = face_explorer
    httpd, url = serving(explorer)
    try:
        with playwright.sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_page()
            page.goto(url + "/")
            page.wait_for_function("document.getElementById('status').textContent.startsWith('decoded')", timeout=20000)
            options = page.eval_on_selector_all("#edit-vector option", "els => els.map(e => e.value)")
            assert options == NAMES[:3] and page.input_value("#edit-vector") == "Smiling"
            assert "validation split" in page.text_content("#edit-source")
            assert page.eval_on_selector("#decoded", "e => [e.width, e.height]") == [192, 192]  # 64 x 3
            assert "not Smiling" in page.text_content("#legend")
            page.select_option("#edit-image", "4")
            assert page.get_attribute("#edit-thumb", "src") == "/api/test_image/4.png"
            mu, s = np.array(explorer.info["test_mu"][4]), np.array(explorer.info["attributes"]["Smiling"])
            for k in (3.5, -2.0):  # each position of the slider: the image of mu + k s arrives
                (expected,) = explorer.decode(torch.tensor([(mu + k * s).tolist()], dtype=torch.float32))
                expected = "data:image/png;base64," + base64.b64encode(expected).decode()
                page.eval_on_selector(
                    "#edit-k", "(el, k) => { el.value = k; el.dispatchEvent(new Event('input', {bubbles: true})); }", k
                )
                page.wait_for_function(
                    f"document.getElementById('decoded').src === {json.dumps(expected)}", timeout=20000
                )
                assert page.text_content("#edit-k-value") == f"{k:.2f}"
                image = png(base64.b64decode(page.get_attribute("#decoded", "src").split(",", 1)[1]))
                assert (image.mode, image.size) == ("RGB", (64, 64))
            browser.close()
    finally:
        httpd.shutdown()
        httpd.server_close()
