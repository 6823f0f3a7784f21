"""The pieces of the browser tests: a paid cluster serving the tiny Stable Diffusion, the web
process beside it, funded users, and a headless Debian chromium driven by Playwright."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from playwright.sync_api import Page

from tritonfleet.net import free_port
from tritonfleet.processes import ServiceProcess, wait_http_ok
from tritonfleet.up.cluster import LocalCluster

MODELS = Path(__file__).resolve().parents[2] / "models"
TINY_PIPELINE = MODELS / "stable_diffusion" / "tiny"
# Debian's package; Playwright's own browser download does not work here.
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Set to a folder (docs/, say) to keep a screenshot of each page there.
SCREENSHOTS_ENV = "TRITONFLEET_WEB_SCREENSHOTS"


def ensure_tiny_pipeline() -> None:
    """What `make` builds; built here too, so that the tests run on a fresh checkout."""
    if not (TINY_PIPELINE / "model_index.json").exists():
        quiet = {"TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
        script = MODELS / "stable_diffusion" / "build_tiny.py"
        subprocess.run([sys.executable, str(script)], check=True, env={**os.environ, **quiet})


def repository(root: Path, models: list[str]) -> str:
    root.mkdir(parents=True)
    for name in models:
        (root / name).symlink_to(MODELS / name, target_is_directory=True)
    return str(root)


def start_web(
    env: dict[str, str], log: Path, gateway_url: str, token_manager_url: str, port: int | None = None
) -> tuple[ServiceProcess, str]:
    """The web process; on `port` when given (the cluster's web.port, the origin that the token
    manager signs in for), else on a free one."""
    port = port or free_port()
    env = {
        **env,
        "TRITONFLEET_WEB_PORT": str(port),
        "TRITONFLEET_WEB_GATEWAY_URL": gateway_url,
        "TRITONFLEET_WEB_TOKEN_MANAGER_URL": token_manager_url,
        # Short enough that a page waiting on a dead upstream answers well within a test.
        "TRITONFLEET_WEB_REQUEST_TIMEOUT_S": "60",
    }
    web = ServiceProcess("web", [sys.executable, "-m", "tritonfleet", "web"], env, log)
    web.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(f"{url}/healthz", 30, web)
    except Exception:
        web.stop(5)
        raise
    return web, url


def sign_in(token_manager_url: str, user: LocalAccount) -> str:
    message = httpx.post(f"{token_manager_url}/v1/auth/challenge", json={"address": user.address}).json()[
        "message"
    ]
    body = {"address": user.address, "message": message, "signature": sign(user, message)}
    answer = httpx.post(f"{token_manager_url}/v1/auth/verify", json=body)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["api_key"])


def sign(user: LocalAccount, message: str) -> str:
    return str(Account.sign_message(encode_defunct(text=message), user.key).signature.to_0x_hex())


def funded_user(fleet: LocalCluster, credit: int) -> tuple[LocalAccount, str]:
    """A new account, signed in, with `credit` deposited and known to the gateway."""
    user: LocalAccount = Account.create()
    key = sign_in(fleet.token_manager_url, user)
    if credit:
        body = {"address": user.address, "amount": credit}
        answer = httpx.post(f"{fleet.token_manager_url}/v1/faucet", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
    headers = {"Authorization": f"Bearer {key}"}
    wait_for(
        lambda: httpx.get(f"{fleet.gateway_url}/v1/credit", headers=headers).json().get("deposit") == credit,
        "the gateway knows the key and its deposit",
    )
    return user, key


def wait_for(done: Callable[[], object], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.1)


def use_key(page: Page, key: str, account: str) -> None:
    """Signed in as the wallet page leaves a browser: the key in this origin's localStorage."""
    script = f"localStorage.setItem('tritonfleet.apiKey', {key!r});"
    script += f"localStorage.setItem('tritonfleet.account', {account!r});"
    page.add_init_script(script)


def draw_zero(page: Page) -> None:
    """An upright ellipse on the digit pad, stroke by stroke, as a hand would."""
    box = page.locator("#pad").bounding_box()
    assert box is not None
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy - 75)
    page.mouse.down()
    for step in range(1, 41):
        angle = 2 * math.pi * step / 40
        page.mouse.move(cx + 50 * math.sin(angle), cy - 75 * math.cos(angle))
    page.mouse.up()


def screenshot(page: Page, name: str) -> None:
    folder = os.environ.get(SCREENSHOTS_ENV)
    if folder:
        page.screenshot(path=str(Path(folder) / f"web-{name}.png"), full_page=True)


class Traffic:
    """Paid `simple` requests back to back from a thread, so that the cluster's charts move."""

    def __init__(self, gateway_url: str, key: str) -> None:
        self.url = f"{gateway_url}/v2/models/simple/infer"
        self.headers = {"Authorization": f"Bearer {key}"}
        self.stopping = threading.Event()
        self.statuses: list[int] = []
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        inputs = [
            {"name": n, "shape": [1, 16], "datatype": "INT32", "data": [1] * 16} for n in ("INPUT0", "INPUT1")
        ]
        with httpx.Client(headers=self.headers, timeout=10) as client:
            while not self.stopping.is_set():
                self.statuses.append(client.post(self.url, json={"inputs": inputs}).status_code)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join()
