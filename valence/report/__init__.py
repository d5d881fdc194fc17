"""evaluate, mistakes, plots_page: scores from out-of-fold predictions, figures, and the offline plots page."""
