"""The intake: how bans and unbans come in and are committed, and who sends them on.

==============  ==========================================================================
``snapshot``    the validated rules cached for the hook (``STATE_DIR/rules.json``)
``commit``      :class:`Intake`: the one commit path (guard, target, bantime, holders,
                outbox) and the messages every way in prints
``hook``        the fast path of ``cfban ban|unban … --background`` (fail2ban's hook)
``spool``       the journal files fail2ban's Python action writes
``deliverer``   the background ``cfban deliver --linger``: spool ingest and delivery
``lock``        the one file-lock class (delivery round, background deliverer)
``alarm``       the warning that delivery fails
==============  ==========================================================================

The rules they apply (:class:`cfban.rules.Rules`: never-ban lists, how long a ban lasts,
growth, recidive) are a plain snapshot of the validated configuration.

Every module here except ``deliverer`` uses the standard library only, so the hook stays
quick; importing this package imports nothing.
"""
