"""One companion module per notebook: its widgets, figures, experiment drivers and exercise checkers.

A notebook imports the core (``course_utils.model``, ``train``, ``lm``, ...) and its own companion,
``from course_utils.lessons import <topic> as lab``. A companion never imports another companion:
anything two notebooks need belongs in the core. Each module is named after its notebook's topic
(not its number), so renumbering the course moves nothing here.
"""
