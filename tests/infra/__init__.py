"""Tests of the Pulumi programs and their stack configuration."""
