"""Test helpers for projects that use webllm-py: headless Chromium with WebGPU
(`browser.WebGPUBrowser`), a static server with a request log (`browser.StaticServer`),
and pytest fixtures for both (`browser.webgpu_browser`, `browser.static_server`)."""

from .browser import CHROMIUM_WEBGPU_FLAGS, StaticServer, WebGPUBrowser, browser_skip_reason, chromium_path

__all__ = ["CHROMIUM_WEBGPU_FLAGS", "StaticServer", "WebGPUBrowser", "browser_skip_reason", "chromium_path"]
