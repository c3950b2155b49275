"""Prefect flows over the DVC stages (`dvc repro <stage>` in the project root); see prefect.yaml."""
