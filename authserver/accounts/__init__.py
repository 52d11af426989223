"""Accounts (tenancy): the account records, and who may see and touch what.

``registry`` holds the accounts themselves (the platform account included); ``tenancy``
the rules the admin API, the web UI and the protocol endpoints share about which account
a caller acts in.
"""
