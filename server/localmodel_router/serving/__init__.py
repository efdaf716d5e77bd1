"""What each endpoint family does between parsing the request and rendering the response."""
