//! Recipes: the JSON shapes of Oumi's recipe format, validated into a [`Recipe`].
