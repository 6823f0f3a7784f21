"""The pages: static HTML, scripts and styles shipped in the package (no CDN, works offline)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
PAGES = ("generate", "playground", "cluster", "wallet")

router = APIRouter(include_in_schema=False)


@router.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse("/generate")


@router.get("/help/text-to-image")
async def help_text_to_image() -> FileResponse:
    return FileResponse(STATIC_DIR / "help-text-to-image.html")


def _page(name: str) -> None:
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / f"{name}.html", headers={"Cache-Control": "no-cache"})

    router.add_api_route(f"/{name}", page, methods=["GET"], name=f"page_{name}")


for _name in PAGES:
    _page(_name)
