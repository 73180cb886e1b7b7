"""The REST API (`/api/v1`) for operators, the dashboard and integrations."""
