"""The REST service the web app calls: auth, profiles, feed, connection requests,
message history and payments. Tornado, JSON in and out, validated by pydantic."""
