"""Offline access evaluation: would the cloud allow what the pipelines do, and deny what they must not?"""
