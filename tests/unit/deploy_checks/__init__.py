"""The checks of every file in deploy/: functions of a repository root that return
the problems they find (tests/unit/test_deploy_files.py, test_deploy_checks.py)."""
