"""Thin APIRouters: parse, call one service method, pick the response type."""
