"""MLflow tracking helpers and the model registry lifecycle (register / promote / rollback)."""
