"""A tiny API to capture schemathesis runs against: correct, unless COOP_TARGET_DEFECT=1 (then
`POST /boom` answers 500 past n = 3)."""

from __future__ import annotations

import os

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict

app = FastAPI()


class Item(BaseModel):
    model_config = ConfigDict(strict=True)
    n: int


@app.get("/items/{n}")
def item(n: int) -> Item:
    return Item(n=n)


@app.post("/boom")
def boom(item: Item) -> Item:
    if os.environ.get("COOP_TARGET_DEFECT") == "1" and item.n > 3:
        raise RuntimeError("a server defect")
    return item
