"""The file format: what a persisted-job-data file holds and how it is written and read.

``schema`` (the envelope's fixed text and limits), ``data_format`` (the format labels),
``conversion`` (values to the JSON the reference writes), ``envelope`` (writing and parsing a
whole file), ``results`` (merging results in their encoded form) and ``load`` (a file's data
dictionary, its pickled values loaded as the caller allows). Bytes, base64 and files are the
codec's (``jobpersist._codec``); pickles are ``jobpersist._pickle``'s.
"""
