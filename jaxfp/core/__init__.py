"""The base layer: what every other layer may use, and which uses none.

What each module holds: docs/layout.md (layer 7, core).
"""
