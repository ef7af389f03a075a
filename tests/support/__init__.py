"""Helpers shared by test modules. No tests here, and test modules never import one
another: what two of them need lives here or in ``tests/factories.py``."""
