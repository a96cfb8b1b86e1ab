"""course_utils: the one shared package every notebook of *LLMs Under the Hood* imports.

Start a notebook with::

    import course_utils
    course_utils.setup()
"""
from .runtime import get_device, seed_everything, set_threads, setup

__version__ = "0.1.0"
__all__ = ["setup", "seed_everything", "get_device", "set_threads"]
