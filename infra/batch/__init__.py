"""``model-deploy-batch``: score a dataset offline with a package, locally or on a managed batch engine."""
