"""The web frontend in headless chromium, on a real paid cluster: node-1 serves simple, digits
and the tiny Stable Diffusion pipeline (random weights: it draws noise), node-2 serves simple."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.e2e.cluster import fleet_config, paid_sections
from tests.web.site import (
    CHROMIUM,
    Traffic,
    draw_zero,
    ensure_tiny_pipeline,
    funded_user,
    repository,
    screenshot,
    sign,
    start_web,
    use_key,
    wait_for,
)
from tritonfleet.net import free_port
from tritonfleet.up.cluster import LocalCluster, NodeSpec
from tritonfleet.web.kserve import HEADER_LENGTH, parse_response

SD_PRICE = 50


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    ensure_tiny_pipeline()
    tmp = tmp_path_factory.mktemp("web")
    nodes = [
        NodeSpec(
            "node-1", {"model_repository": repository(tmp / "r1", ["simple", "digits", "stable_diffusion"])}
        ),
        NodeSpec("node-2", {"model_repository": repository(tmp / "r2", ["simple"])}),
    ]
    # The web's port is the cluster's: the token manager signs in for that origin only.
    config = fleet_config(tmp, web={"port": free_port()}, **paid_sections(tmp))
    local = LocalCluster(config, tmp / "state", nodes)
    try:
        local.start()
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="module")
def web(fleet: LocalCluster) -> Iterator[str]:
    process, url = start_web(
        fleet.env,
        fleet.state_dir / "logs" / "web.log",
        fleet.gateway_url,
        fleet.token_manager_url,
        port=fleet.config.web.port,
    )
    try:
        yield url
    finally:
        process.stop(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no chromium at {CHROMIUM}: `make install` installs Debian's package")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser profile per test; any uncaught script error fails the test."""
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield opened
    finally:
        context.close()
    assert errors == [], f"script errors on the page: {errors}"


def test_every_page_opens_with_its_title_and_navigation(page: Page, web: str) -> None:
    for path, title in (("generate", "Generate"), ("playground", "Playground"), ("cluster", "Cluster")):
        page.goto(f"{web}/{path}")
        expect(page.locator("h1")).to_have_text(title)
        expect(page.locator("header nav a.current")).to_have_text(title)
    page.goto(f"{web}/wallet")
    expect(page.locator("h1")).to_have_text("Wallet")
    expect(page.locator("#no-wallet")).to_contain_text("No browser wallet found")


def test_text_to_image_on_the_tiny_pipeline_shows_an_image_the_node_and_the_cost(
    page: Page, web: str, fleet: LocalCluster
) -> None:
    user, key = funded_user(fleet, credit=1000)
    use_key(page, key, user.address)
    page.goto(f"{web}/generate")
    page.fill("#prompt", "a lighthouse on a cliff at sunset")
    page.fill("#steps", "4")
    page.fill("#seed", "42")
    page.click("#run")
    expect(page.locator("#progress")).to_be_visible()
    image = page.locator("img.generated")
    expect(image).to_be_visible(timeout=60_000)
    assert image.evaluate("img => img.naturalWidth") == 64, "the tiny pipeline draws 64x64 (noise)"
    facts = page.locator("#facts")
    expect(facts).to_contain_text("node-1")
    expect(facts).to_contain_text(f"{SD_PRICE} credit")
    screenshot(page, "generate")


def test_the_tiny_stable_diffusion_model_keeps_the_contract_through_the_gateway(fleet: LocalCluster) -> None:
    """Random weights make noise, so only the contract is checked: shapes, type, seeds, errors."""
    _, key = funded_user(fleet, credit=1000)

    def run(seed: int, steps: int = 2) -> httpx.Response:
        values = {"PROMPT": ("BYTES", "a cat"), "SAMPLES": ("INT32", 2), "STEPS": ("INT32", steps)}
        values |= {"GUIDANCE_SCALE": ("FP32", 7.5), "SEED": ("INT64", seed)}
        inputs = [{"name": n, "shape": [1], "datatype": d, "data": [v]} for n, (d, v) in values.items()]
        return httpx.post(
            f"{fleet.gateway_url}/v2/models/stable_diffusion/infer",
            json={"inputs": inputs},
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
        )

    def images(answer: httpx.Response) -> np.ndarray:
        assert answer.status_code == 200, answer.text
        (tensor,) = parse_response(answer.content, answer.headers.get(HEADER_LENGTH))
        return tensor.array

    first, again, other = images(run(1)), images(run(1)), images(run(2))
    assert first.shape == (2, 64, 64, 3) and first.dtype == np.uint8
    assert (first == again).all() and not (first == other).all(), "the seed decides the image"
    refused = run(1, steps=0)
    assert refused.status_code == 400 and "STEPS must be between" in refused.json()["error"]


def test_signing_in_with_an_injected_ethereum_wallet_and_topping_up_from_the_faucet(
    page: Page, web: str
) -> None:
    user: LocalAccount = Account.create()
    # A stand-in for MetaMask: window.ethereum, whose personal_sign is done by eth-account here.
    page.expose_function("signHex", lambda hex_message: sign(user, bytes.fromhex(hex_message[2:]).decode()))
    page.add_init_script(
        "window.ethereum = {request: async ({method, params}) => method === 'eth_requestAccounts'"
        f" ? [{user.address!r}] : window.signHex(params[0])}};"
    )
    page.goto(f"{web}/wallet")
    page.click("#eth-signin")
    expect(page.locator("#address")).to_have_text(user.address)
    expect(page.locator("#new-key")).to_contain_text("tf_")
    page.fill("#amount", "1000")
    page.click("#topup")
    expect(page.locator("#faucet-message")).to_contain_text("Deposited 1000", timeout=60_000)
    expect(page.locator("[data-balance=deposit] .v")).to_have_text("1000", timeout=10_000)


def test_a_digit_drawn_on_the_canvas_is_classified(page: Page, web: str, fleet: LocalCluster) -> None:
    user, key = funded_user(fleet, credit=100)
    use_key(page, key, user.address)
    page.goto(f"{web}/playground?model=digits")
    draw_zero(page)
    prediction = page.locator("#prediction")
    expect(prediction).to_have_text(re.compile(r"^[0-9]$"), timeout=30_000)
    probabilities = page.locator("[data-output=PROBABILITIES] td.num").all_inner_texts()
    scores = [float(text) for text in probabilities]
    assert len(scores) == 10 and abs(sum(scores) - 1) < 0.01
    assert int(prediction.inner_text()) == scores.index(max(scores)), "the shown label is the likeliest"
    screenshot(page, "playground")


def test_a_paid_inference_shows_up_as_a_charge_and_a_settlement_in_the_wallet(
    page: Page, web: str, fleet: LocalCluster
) -> None:
    user, key = funded_user(fleet, credit=100)
    use_key(page, key, user.address)
    page.goto(f"{web}/playground?model=simple")
    page.click("#run")
    expect(page.locator("[data-output=OUTPUT0]")).to_be_visible(timeout=30_000)
    expect(page.locator("#result")).to_contain_text("1 credit")
    page.goto(f"{web}/wallet")
    expect(page.locator("#usage")).to_contain_text("simple")
    # The settler settles every second; a loaded machine may take a while longer.
    expect(page.locator("#settlements .tx")).to_contain_text("0x", timeout=60_000)
    expect(page.locator("[data-balance=deposit] .v")).to_have_text("99", timeout=20_000)
    screenshot(page, "wallet")


def test_bad_input_is_a_clear_message_on_the_page_and_a_proper_status(
    page: Page, web: str, fleet: LocalCluster
) -> None:
    user, key = funded_user(fleet, credit=0)
    use_key(page, key, user.address)
    page.goto(f"{web}/generate")
    expect(page.locator("#run")).to_be_enabled()
    message = page.locator("#message")
    for prompt, steps, says in (
        ("", "4", "the prompt is empty"),
        ("a cat", "999", "steps must be between 1 and 150"),
        ("x" * 5000, "4", "the prompt is too long"),
        ("a cat", "4", "insufficient credit"),
    ):
        page.fill("#prompt", prompt)
        page.fill("#steps", steps)
        page.click("#run")
        expect(message).to_contain_text(says)
    expect(message.locator("a[href='/wallet']")).to_be_visible()
    auth = {"Authorization": f"Bearer {key}"}
    statuses = [
        httpx.post(f"{web}/api/generate", json={"prompt": ""}, headers=auth).status_code,
        httpx.post(f"{web}/api/generate", json={"prompt": "a", "steps": 999}, headers=auth).status_code,
        httpx.post(f"{web}/api/generate", json={"prompt": "a", "steps": 4}, headers=auth).status_code,
        httpx.post(f"{web}/api/models/digits/infer", content=b"[" * 5_000_000, headers=auth).status_code,
        httpx.post(f"{web}/api/generate", json={"prompt": "a", "steps": 4}).status_code,
    ]
    assert statuses == [422, 422, 402, 413, 401]


def test_a_gateway_that_is_down_is_reported_and_nothing_hangs(
    page: Page, fleet: LocalCluster, tmp_path: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    process, url = start_web(fleet.env, tmp_path / "web.log", dead, fleet.token_manager_url)
    try:
        started = time.monotonic()
        answer = httpx.post(f"{url}/api/generate", json={"prompt": "a cat"}, timeout=10)
        assert answer.status_code == 502 and "is not answering" in answer.json()["error"]
        page.goto(f"{url}/generate")
        expect(page.locator("#no-model")).to_contain_text(f"the gateway at {dead} is not answering")
        page.goto(f"{url}/cluster")
        expect(page.locator("#gateway")).to_have_text("down")
        assert time.monotonic() - started < 10
    finally:
        process.stop(10)


def test_a_killed_node_turns_red_within_two_seconds_and_green_when_it_is_back(
    page: Page, web: str, fleet: LocalCluster
) -> None:
    # Back-to-back requests run for several seconds: enough credit for any machine's speed.
    _, key = funded_user(fleet, credit=100_000)
    page.goto(f"{web}/cluster")
    node = page.locator("[data-node-id=node-2]")
    expect(node).to_have_attribute("data-status", "up")
    with Traffic(fleet.gateway_url, key) as traffic:
        rate = page.locator("[data-node-id=node-2] [data-metric=rps]")
        expect(rate).to_have_text(re.compile(r"^[1-9]"), timeout=10_000)
        time.sleep(3)
        screenshot(page, "cluster")
    assert set(traffic.statuses) == {200}
    victim = fleet.nodes["node-2"]
    victim.signal(signal.SIGKILL)
    killed_at = time.monotonic()
    expect(node).to_have_attribute("data-status", "down", timeout=5_000)
    assert time.monotonic() - killed_at < 2.5, "red within a second or two"
    screenshot(page, "cluster-node-down")
    assert victim.proc is not None
    victim.proc.wait()
    victim.start()
    fleet.wait_node("node-2", 120)
    expect(node).to_have_attribute("data-status", "up", timeout=10_000)
    wait_for(lambda: victim.alive(), "node-2 runs again")
