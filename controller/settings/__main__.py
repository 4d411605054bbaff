"""``python -m controller.settings``: print the reference (``> docs/settings.md`` regenerates it)."""

from controller.settings.reference import render_reference

if __name__ == "__main__":
    print(render_reference(), end="")
