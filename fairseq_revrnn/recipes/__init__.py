"""Recipes: data preparation, result tables and plots for ``examples/`` and the demo.

Nothing here is imported when fairseq loads the plugin; each module is a
small command (``python -m fairseq_revrnn.recipes.<name> --help``) that the
shell scripts in ``examples/`` call.
"""
