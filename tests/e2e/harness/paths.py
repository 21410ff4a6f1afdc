"""Where the checkout is, computed from this file (never hard-coded)."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
# plugin_paths points here; the module folder is build/mod_web_push/ (DESIGN.md contract).
BUILD = os.path.join(ROOT, "build")
MODULE_DIR = os.path.join(BUILD, "mod_web_push")
