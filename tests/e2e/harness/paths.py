"""Where the checkout is, computed from this file (never hard-coded)."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
# plugin_paths points here; the module folder is build/mod_web_push/ (DESIGN.md contract).
# E2E_BUILD points the suite at another build of the module (e.g. an installed copy).
BUILD = os.environ.get("E2E_BUILD") or os.path.join(ROOT, "build")
MODULE_DIR = os.path.join(BUILD, "mod_web_push")
# Test-only Prosody modules (other modules using mod_web_push's events).
TEST_MODULES = os.path.join(ROOT, "tests", "e2e", "modules")
