"""The grading machinery behind :mod:`course_lib.check` and the ``course-grade`` command.

- :mod:`~course_lib.grading.checker`: exercises, cases and running a learner's function safely;
- :mod:`~course_lib.grading.compare`: comparing results (tensors, models, masked positions) and
  describing the first difference in words;
- :mod:`~course_lib.grading.observers`: shared observers (gradients, masked outputs, models);
- :mod:`~course_lib.grading.exercises`: the registry, one ``lessonNN.py`` per lesson;
- :mod:`~course_lib.grading.grade`: the grade report over whole notebooks;
- :mod:`~course_lib.grading.notebooks`: solution regions, lesson generation, solution extraction.

Inside ``course_lib`` only :mod:`course_lib.check` imports this package (``tests/test_layers.py``):
the methods never depend on how they are graded.
"""
