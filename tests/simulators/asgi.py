"""An httpx client that calls a simulator app in-process."""

from __future__ import annotations

import re

import httpx
from fastapi import FastAPI

# `at` timestamps: ISO 8601, UTC, microseconds.
ISO_US = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def asgi_client(app: FastAPI, base_url: str = "http://sim.test") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)
