"""HTTP views: read the request, call one function, write the answer."""
