"""A member's data-protection rights: the copy of their data (GDPR Art. 15 and 20) and
their request to be erased (Art. 17), which staff then carry out."""
