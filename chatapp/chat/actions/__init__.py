"""The chat's write paths: every database change of the chat app goes through these modules.

`replies` owns an answer's rows and broadcasts, `conversations` the edits made through the
JSON API. Plans are worked out beforehand, by reads only, in `chatapp.chat.planning`.
"""
