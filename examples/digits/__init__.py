"""A real, seconds-long example: classify scikit-learn's bundled 8x8 handwritten digits."""
