"""fail2ban compatibility: read fail2ban filter files and match log lines as fail2ban would.

The specification is fail2ban's own behaviour (filter files, tags, dates). Modules:

``_model``      the dataclasses that flow between the parts (definition, date match, failure)
``_options``    ``name[opt=val, ...]`` filter specs and option lists
``_ini``        fail2ban's INI dialect: includes, ``.local`` siblings, ``%(...)s`` interpolation
``_loader``     filter spec -> files -> :class:`FilterDefinition` (``<tag>`` substitution)
``_dates``      date templates, ``datepattern``, ``%Ex...`` directives, date -> epoch
``_regex``      regex tags (``<HOST>``, ``<F-NAME>``, ...) expanded and compiled
``_prefilter``  literals every failure contains: lines without them skip the pipeline
``_filter``     the pure per-line pipeline: :class:`Filter`; what a raw log line is to it
``_matcher``    :class:`LineMatcher`: a filter's state across lines (buffer, last date, sessions)
``_search``     the failregex loop of one line (or buffer) and the failure it gives
``_oneline``    the same loop in fewer steps for plain single-line filters
``_scan``       a filter over a whole chunk of lines, looking only at candidate lines
``_candidates`` chunk-wide searches for candidate lines (native regex, or literal probes)
``_union``      one such search for the filters of several jails that read the same file
``_fragments``  failregexes reduced to chains: regexes that match a superset of their lines
``_engines``    span searches over bytes: the native engine (``google-re2``), or ``re``
``_cuts``       what a date cut allows; the ASCII characters of a regex item
``_api``        :func:`load_filter`, the entry point
"""

from __future__ import annotations

from cfban.fail2ban._api import load_filter
from cfban.fail2ban._filter import MAX_LINE_CHARS, Filter, decode_line
from cfban.fail2ban._matcher import LineMatcher
from cfban.fail2ban._model import DateMatch, Failure, FilterDefinition, RegexSource

__all__ = [
    "MAX_LINE_CHARS",
    "DateMatch",
    "Failure",
    "Filter",
    "FilterDefinition",
    "LineMatcher",
    "RegexSource",
    "decode_line",
    "load_filter",
]
