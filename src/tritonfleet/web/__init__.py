"""The web frontend: text to image, a model playground, the live cluster view and the wallet.

A FastAPI backend in front of the gateway, the health checkers and the token manager; the
pages are static files shipped in this package (no CDN), so the frontend works offline.
"""
