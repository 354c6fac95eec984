"""The landmark-editing add-on as a Blender 4.2+ extension (see ``blender_manifest.toml``).

Blender imports this package and calls ``register()``; the add-on itself is
``densemark_addon.py``, which also installs on its own as a legacy add-on (its ``bl_info``).
"""

from .densemark_addon import register, unregister

__all__ = ["register", "unregister"]
