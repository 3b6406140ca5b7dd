"""Rows for the contract tests: every registered paper tab, its paper package and testing hooks."""
from __future__ import annotations

import importlib

import pytest

import tabs


def paper_tabs():
    return tabs.model_tabs()


def paper_keys() -> list[str]:
    return [t.INFO.key for t in paper_tabs()]


def testing_module(key: str):
    return importlib.import_module(f"adapters.{key}.testing")


def spec_of(key: str):
    return importlib.import_module(f"adapters.{key}").SPEC


@pytest.fixture(params=paper_keys())
def key(request) -> str:
    return request.param


@pytest.fixture
def hooks(key):
    return testing_module(key)


@pytest.fixture
def tab(key):
    return next(t for t in paper_tabs() if t.INFO.key == key)
