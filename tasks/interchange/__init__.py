"""Datasets in and out: step-label formats (formats), export (export) and import (imports)."""
