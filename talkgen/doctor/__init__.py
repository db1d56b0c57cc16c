"""`talkgen doctor`: can this machine serve? Each check is one line: ok, warning or error, with the fix.

``talkgen.doctor.runner.diagnose()`` returns the `Report` (see ``result.py``); ``command.py`` prints it.
"""
