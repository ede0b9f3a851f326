"""From hits to a cited answer: choosing, checking and marking quotes, or declining."""
