"""Page data for the web pages: job views, charts, results across jobs, form submission."""
