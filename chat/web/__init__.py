"""The browser pages: the room list and room page, sign-up and login, and their forms."""
