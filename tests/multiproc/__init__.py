"""Promises across processes, each example under a real multi-process server."""
