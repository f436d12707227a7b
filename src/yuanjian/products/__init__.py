"""Product licences and the product registry (Art. 18–23)."""
