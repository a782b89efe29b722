dots
