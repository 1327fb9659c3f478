"""Modules that no job may make a process import (see test_hardening)."""
