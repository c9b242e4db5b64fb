"""The coordinator service.

``app`` builds the FastAPI application (``create_app``); ``api`` holds the ``/v1`` routes;
``schemas`` the HTTP payloads; ``db`` the tables and migrations; ``store`` the SQL
adapters (ledger, jobs, tasks, providers); ``service`` the operations that combine them
with the pure rules of ``gpudepin.core``; ``auth`` Sign-In with Ethereum and bearer
sessions; ``blobs`` the content-addressed file store; ``loops`` the background work
(expiring silent agents' assignments).
"""
